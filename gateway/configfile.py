"""Load YAML into pydantic models with errors that name file, line and field.

A keeper who mistypes one key in a 300-line site file must be told where, not handed a
traceback. We compose the YAML node tree once to remember each key's line, then translate
pydantic's error locations (``buildings.0.rooms.1.port``) into ``file:line: field: why``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is unreadable or invalid. ``problems`` are one line each."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(problems))


def _line_index(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _line_index(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*prefix, str(i)), out)


def read_yaml(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse a YAML file; return its data and a map from key path to line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"{path}: not UTF-8 text: {exc.reason}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}: invalid YAML: {problem}"]) from exc
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    return data, lines


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('buildings', 0, 'rooms', 1, 'id')`` -> ``buildings[0].rooms[1].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _line_for(loc: tuple[int | str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    # Tagged unions add the tag as a loc element ('modbus_tcp'); drop parts the YAML lacks.
    parts = tuple(str(p) for p in loc)
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return lines.get(())


def _clean_loc(
    loc: tuple[int | str, ...], lines: dict[tuple[str, ...], int]
) -> tuple[int | str, ...]:
    """Drop the parts pydantic adds that are not in the file (a tagged union's tag)."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        here = tuple(str(x) for x in (*out, part))
        if isinstance(part, str) and here not in lines and i + 1 < len(loc):
            skipped = tuple(str(x) for x in (*out, loc[i + 1]))
            if skipped in lines:
                continue
        out.append(part)
    return tuple(out)


def validation_problems(
    path: Path | str, exc: ValidationError, lines: dict[tuple[str, ...], int]
) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = _clean_loc(loc, lines)
        line = _line_for(loc, lines)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; unknown keys are refused, not ignored)"
        problems.append(f"{where}: {format_loc(loc)}: {msg}")
    return problems


def load_model(path: Path, model: type[M], context: dict[str, Any] | None = None) -> M:
    """Read ``path`` as YAML and validate it as ``model``; raise ConfigError on any problem."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(path, [f"{path}: file is empty"])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(path, validation_problems(path, exc, lines)) from exc


def load_directory(directories: list[Path], model: type[M], what: str) -> dict[str, M]:
    """Every ``*.yaml`` in ``directories`` validated as ``model``, keyed by its ``id``.

    The id must equal the file name (so a keeper finds a profile by its name); later folders
    may add ids, and every problem of every file is reported at once.
    """
    found: dict[str, M] = {}
    problems: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            try:
                item = load_model(path, model)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            item_id = str(getattr(item, "id", ""))
            if item_id != path.stem:
                problems.append(f"{path}: id '{item_id}' must match the file name")
                continue
            found[item_id] = item
    if problems:
        raise ConfigError(what, problems)
    return found


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone, else a ValueError saying so."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone '{value}' (use an IANA name)") from exc
    return value
