"""Climate profiles per storage class, loaded from ``standards/*.yaml`` (data, not code)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.configfile import load_directory
from gateway.resources import standards_dir

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class Band(BaseModel):
    """An inclusive range ``min <= value <= max``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


class FluctuationMode(StrEnum):
    """How to read the standard's "±2 °C / ±5 % within 24 hours".

    The 1987 regulation (档案库房技术管理暂行规定, Art. 7) does not say what the ± is
    measured against. ``span`` (default) allows highest minus lowest in any 24-hour window up
    to twice the ± (4 °C, 10 %RH); ``strict`` allows the span to be the ± itself (2 °C, 5 %RH).
    """

    SPAN = "span"
    STRICT = "strict"


class Fluctuation(BaseModel):
    """The 24-hour fluctuation limit as written in the standard (the ± values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: FluctuationMode = FluctuationMode.SPAN
    temperature: float = Field(gt=0, description="± °C within 24 hours")
    humidity: float = Field(gt=0, description="± %RH within 24 hours")
    window_hours: float = Field(default=24, gt=0)

    def allowed_span(self, kind: str) -> float:
        """Largest allowed max-minus-min over the window for ``temperature`` or ``humidity``."""
        plus_minus = self.temperature if kind == "temperature" else self.humidity
        return 2 * plus_minus if self.mode is FluctuationMode.SPAN else plus_minus


class StandardsProfile(BaseModel):
    """One storage class's climate: temperature and RH bands and the 24-hour swing limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str
    name_en: str = ""
    source: str
    temperature: Band
    humidity: Band
    fluctuation: Fluctuation


class StandardsLibrary:
    """All known profiles by id: the shipped ones plus any a site adds."""

    def __init__(self, profiles: dict[str, StandardsProfile]) -> None:
        self.profiles = profiles

    @classmethod
    def load(cls, extra_dirs: list[Path] | None = None) -> StandardsLibrary:
        dirs = [standards_dir(), *(extra_dirs or [])]
        return cls(load_directory(dirs, StandardsProfile, "standards profiles"))

    def get(self, profile_id: str) -> StandardsProfile:
        return self.profiles[profile_id]

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self.profiles
