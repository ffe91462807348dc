"""Where the reference files are: shipped beside this package, plus $KDBENCH_REFERENCES."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from bench.errors import SpecError

EXTRA_FOLDER_VARIABLE = "KDBENCH_REFERENCES"


def reference_files(name: str) -> list[Path]:
    """The shipped file `name`, then the one in $KDBENCH_REFERENCES if that folder has it."""
    files = [Path(str(resources.files("bench.references") / name))]
    extra = os.environ.get(EXTRA_FOLDER_VARIABLE)
    if extra and (Path(extra) / name).is_file():
        files.append(Path(extra) / name)
    return files


def load_yaml_entries(name: str) -> dict[str, dict]:
    """The top-level entries of every `name` (later files win), each a mapping."""
    entries: dict[str, dict] = {}
    for path in reference_files(name):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot be read as YAML ({exc})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise SpecError(f"{path}: expected a mapping of named entries")
        entries |= raw
    return entries
