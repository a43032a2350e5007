"""Where the shipped data files live: standards profiles, device profiles, the demo site.

They are package data (``archwatch_resources.*``) so that ``archwatch demo`` runs from any
folder after ``pip install``; in a source checkout they are the repository's own folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_dir(name: str) -> Path:
    return Path(str(resources.files(f"archwatch_resources.{name}")))


def standards_dir() -> Path:
    return _package_dir("standards")


def firmware_configs_dir() -> Path:
    return _package_dir("firmware_configs")


def examples_dir() -> Path:
    return _package_dir("examples")


def demo_site_path() -> Path:
    return examples_dir() / "site.yaml"
