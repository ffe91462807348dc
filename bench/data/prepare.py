"""`bench data prepare`: put on disk, once, everything a DataSpec's backend reads.

CIFAR-format datasets are generated (synthetic) or downloaded (cifar100) and their md5 checked;
image folders are checked for train/ and val/. A backend writes what it reads (the `ffcv`
backend its `<workdir>/ffcv/<content_hash>-{train,test}[...].beton` files; a damaged one is
written again). Files that are already whole are reused, so preparing twice writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.backends.base import backend_named
from bench.data.datasets.base import ARRAYS, dataset_named
from bench.data.datasets.imagefolder import SPLIT_FOLDERS
from bench.data.datasets.registry import content_hash, folder_root, load_arrays


def prepare(data, workdir: Path) -> list[Path]:
    """Prepare `data` (a DataSpec) under `workdir`; return the files its loaders will read."""
    workdir = Path(workdir)
    dataset, backend = dataset_named(data.dataset), backend_named(data.backend)
    if dataset.kind == ARRAYS or data.prepared_arrays:
        splits = load_arrays(data, workdir)  # fetched, checked against published sums, read
        files = (dataset.files(splits.root) if dataset.kind == ARRAYS
                 else sorted(p for p in splits.root.iterdir() if not p.name.startswith(".")))
        return files + backend.prepare_arrays(splits, workdir)
    root = folder_root(data, workdir)
    files = [root / folder for folder in SPLIT_FOLDERS.values()]
    return files + backend.prepare_folder(root, content_hash(root, data.dataset), workdir)
