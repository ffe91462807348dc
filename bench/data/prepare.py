"""`bench data prepare`: put on disk, once, everything a DataSpec's backend reads.

CIFAR-format datasets are generated (synthetic) or downloaded (cifar100) and their md5 checked;
image folders are checked for train/ and val/. The `ffcv` backend also gets its .beton files
(`<workdir>/ffcv/<content_hash>-{train,test}[...].beton`); a damaged one is written again. Files
that are already whole are reused, so preparing twice writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.backends.ffcv_backend import ensure_cifar_betons, ensure_imagefolder_betons
from bench.data.datasets import cifar
from bench.data.datasets.imagefolder import SPLIT_FOLDERS
from bench.data.datasets.registry import (
    CIFAR_DATASETS,
    CIFAR_LAYOUTS,
    IMAGE_FOLDER_DATASETS,
    REAL_CIFAR,
    content_hash,
    ensure_cifar,
    folder_root,
    load_arrays,
)
from bench.errors import SpecError


def prepare(data, workdir: Path) -> list[Path]:
    """Prepare `data` (a DataSpec) under `workdir`; return the files its loaders will read."""
    workdir = Path(workdir)
    if data.dataset in CIFAR_DATASETS:
        root = ensure_cifar(data, workdir)
        layout = CIFAR_LAYOUTS[data.dataset]
        if data.dataset in REAL_CIFAR:
            cifar.verify_md5(root, layout)
        files = [path for paths in cifar.batch_files(root, layout).values() for path in paths]
        if data.backend == "ffcv":
            digest = content_hash(root, data.dataset)
            betons = ensure_cifar_betons(root, data.dataset, digest, workdir, repair=True)
            files += list(betons.values())
        return files
    if data.prepared_arrays:
        splits = load_arrays(data, workdir)
        files = sorted(p for p in splits.root.iterdir() if not p.name.startswith("."))
        if data.backend == "ffcv":
            betons = ensure_cifar_betons(
                splits.root, data.dataset, splits.content_hash, workdir, repair=True,
                read=splits.read_whole,
            )
            files += list(betons.values())
        return files
    if data.dataset in IMAGE_FOLDER_DATASETS:
        root = folder_root(data, workdir)
        files = [root / folder for folder in SPLIT_FOLDERS.values()]
        if data.backend == "ffcv":
            digest = content_hash(root, data.dataset)
            files += list(ensure_imagefolder_betons(root, digest, workdir, repair=True).values())
        return files
    raise SpecError(
        f"data.dataset: unknown dataset '{data.dataset}'; "
        f"valid: {', '.join(CIFAR_DATASETS + IMAGE_FOLDER_DATASETS)}"
    )
