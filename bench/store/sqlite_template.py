"""New sqlite MLflow stores start as a copy of an empty store made once per MLflow version.

Creating a store runs MLflow's schema migrations (about 1.2 s here, once per new work directory);
copying a file that MLflow itself created and migrated gives the same database in milliseconds.
The template lives in the user's cache ($XDG_CACHE_HOME or ~/.cache), keyed by MLflow's version.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.files import atomic_path
from bench.locks import file_lock


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kdbench" / "mlflow-schema"


def _template(mlflow) -> Path:
    folder = _cache_folder()
    path = folder / f"mlflow-{mlflow.__version__}.db"
    if path.is_file():
        return path
    with file_lock(folder / ".template.lock"):
        if not path.is_file():
            with atomic_path(path) as tmp:
                client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp}")
                client.search_experiments()  # creates and migrates the schema
                _dispose(mlflow, f"sqlite:///{tmp}")
    return path


def _dispose(mlflow, uri: str) -> None:
    """Close MLflow's cached engine of `uri`, so the file is complete and no longer held."""
    from mlflow.tracking._tracking_service import utils

    store = utils._get_store(uri)
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()


def seed_new_store(db_file: Path, mlflow) -> None:
    """Put an empty, migrated MLflow database at `db_file` where there is no file yet."""
    if db_file.exists():
        return
    try:
        template = _template(mlflow)
    except Exception:  # the cache is an optimisation: MLflow creates the schema itself
        return
    with atomic_path(db_file) as tmp:
        shutil.copyfile(template, tmp)
