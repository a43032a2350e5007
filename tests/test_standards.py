"""Standards profiles hold the bands of ../shared/docs/domain.md, as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.configfile import ConfigError
from gateway.standards import FluctuationMode, StandardsLibrary

# (class, T min, T max, RH min, RH max) from domain.md's table
BANDS = [
    ("paper", 14, 24, 45, 60),
    ("special", 14, 20, 45, 55),
    ("av_magnetic", 14, 24, 40, 60),
    ("film_copy", 14, 24, 40, 60),
    ("film_master", 13, 15, 35, 45),
    ("optical", 15, 20, 25, 45),
]


@pytest.mark.parametrize(("cls", "tmin", "tmax", "hmin", "hmax"), BANDS)
def test_shipped_profile_bands(
    cls: str, tmin: float, tmax: float, hmin: float, hmax: float
) -> None:
    prof = StandardsLibrary.load().get(cls)
    assert (prof.temperature.min, prof.temperature.max) == (tmin, tmax)
    assert (prof.humidity.min, prof.humidity.max) == (hmin, hmax)
    # Inclusive edges
    assert prof.temperature.contains(tmin) and prof.temperature.contains(tmax)
    assert not prof.humidity.contains(hmax + 0.1)


def test_fluctuation_default_is_span_reading() -> None:
    prof = StandardsLibrary.load().get("paper")
    assert prof.fluctuation.mode is FluctuationMode.SPAN
    assert prof.fluctuation.allowed_span("temperature") == 4
    assert prof.fluctuation.allowed_span("humidity") == 10


def test_site_may_add_a_strict_profile(tmp_path: Path) -> None:
    (tmp_path / "paper_precious.yaml").write_text(
        "id: paper_precious\nname: 珍贵档案\nsource: site policy\n"
        "temperature: {min: 16, max: 20}\nhumidity: {min: 45, max: 55}\n"
        "fluctuation: {mode: strict, temperature: 2, humidity: 5}\n",
        encoding="utf-8",
    )
    lib = StandardsLibrary.load([tmp_path])
    prof = lib.get("paper_precious")
    assert prof.fluctuation.allowed_span("temperature") == 2
    assert "paper" in lib


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("temperature: {min: 24, max: 14}", "must be below max"),
        ("temperature: {min: 14, max: 24, maxx: 3}", "unknown key"),
    ],
)
def test_bad_profile_refused(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(
        f"id: bad\nname: x\nsource: y\n{body}\nhumidity: {{min: 45, max: 55}}\n"
        "fluctuation: {temperature: 2, humidity: 5}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        StandardsLibrary.load([tmp_path])
    assert expected in "\n".join(info.value.problems)
    assert "bad.yaml:4" in "\n".join(info.value.problems)
