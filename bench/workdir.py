"""Where kdbench keeps data, checkpoints, teachers and the embedded MLflow store.

One folder, independent of the current directory: `--workdir`, else $KDBENCH_HOME, else
~/.cache/kdbench.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def resolve_workdir(explicit: str | os.PathLike | None = None, create: bool = True) -> Path:
    if explicit:
        path = Path(explicit)
    elif os.environ.get("KDBENCH_HOME"):
        path = Path(os.environ["KDBENCH_HOME"])
    else:
        path = Path.home() / ".cache" / "kdbench"
    path = path.expanduser().resolve()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchError(
                f"work directory {path} cannot be created ({exc.strerror}); choose --workdir or "
                "$KDBENCH_HOME on a writable disk"
            ) from None
    return path
