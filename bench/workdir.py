"""Where kdbench keeps data, checkpoints, teachers and the embedded MLflow store.

One folder, independent of the current directory: `--workdir`, else $KDBENCH_HOME, else
~/.cache/kdbench.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_workdir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        path = Path(explicit)
    elif os.environ.get("KDBENCH_HOME"):
        path = Path(os.environ["KDBENCH_HOME"])
    else:
        path = Path.home() / ".cache" / "kdbench"
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
