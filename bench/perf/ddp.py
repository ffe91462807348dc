"""DDP scaling: training img/s of one run on N ranks (torchrun underneath) as a ratio to N x the
single process, measured in one run (`python -m bench perf --ddp 1,2,4,8`).

Each N trains the same cell end to end (`bench run`) on a generated ImageNet-sized image folder
(JPEGs of 256 px, RandomResizedCrop 224 + flip, the torch backend); the number is the train
img/s kdbench logs for the last epoch (global samples over the epoch's wall time, so the first
epoch's warm-up is left out)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tabulate import tabulate

from bench.errors import SpecError
from bench.store.trackers import MlflowTracker

IMAGE_SIDE = 256  # stored side; the train crop is 224


def write_image_folder(root: Path, classes: int, per_class: int, val_per_class: int = 2) -> Path:
    """train/ and val/ class folders of random-texture JPEGs (what decoding costs is real)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.JPEG", quality=90)
    return root


def _matrix(root: Path, arch: str, batch_size: int, epochs: int, num_workers: int) -> dict:
    return {
        "name": "perf_ddp",
        "data": {"dataset": "imagefolder", "root": str(root), "backend": "torch",
                 "num_workers": num_workers},
        "recipe": {"epochs": epochs, "batch_size": batch_size, "lr": 0.1, "milestones": []},
        "pairs": [{"teacher": arch, "student": arch}],  # CE only: the teacher is never built
        "methods": ["ce"],
        "seeds": 1,
    }


def _command(ranks: int) -> list[str]:
    if ranks == 1:
        return [sys.executable, "-m", "bench"]
    # --standalone: a rendezvous on a free local port
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(ranks), "-m", "bench"]


def measure_ddp(
    counts: list[int], *, device: str, arch: str, classes: int, per_class: int, batch_size: int,
    epochs: int = 2, num_workers: int = 4,
) -> list[dict[str, Any]]:
    """img/s per rank count, each a fresh work directory on the same generated folder."""
    if not counts or min(counts) < 1:
        raise SpecError(f"--ddp {counts}: expected rank counts, e.g. 1,2,4,8")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kdbench-perf-ddp-") as folder:
        root = write_image_folder(Path(folder) / "images", classes, per_class)
        spec = Path(folder) / "perf_ddp.yaml"
        spec.write_text(yaml.safe_dump(_matrix(root, arch, batch_size, epochs, num_workers)))
        for ranks in counts:
            workdir = Path(folder) / f"ranks-{ranks}"
            command = _command(ranks) + [
                "run", "--matrix", str(spec), "--device", device, "--workdir", str(workdir)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise SpecError(f"perf --ddp: {ranks} ranks failed: {tail}")
            store = MlflowTracker(workdir)
            run = next(r for r in store.search() if r.tags["role"] == "student")
            images_per_s = store.history(run.run_id, "img_per_s")[-1][1]
            rows.append({"ranks": ranks, "img_per_s": images_per_s,
                         "top1": run.metrics["last_top1"]})
            shutil.rmtree(workdir, ignore_errors=True)
    base = rows[0]["img_per_s"] / rows[0]["ranks"]
    for row in rows:
        row["speedup"] = row["img_per_s"] / rows[0]["img_per_s"]
        row["efficiency"] = row["img_per_s"] / (row["ranks"] * base)
    return rows


def format_ddp_table(rows: list[dict[str, Any]]) -> str:
    headers = ["ranks", "img_per_s", "speedup", "efficiency"]
    return tabulate([[r[h] for h in headers] for r in rows], headers=headers,
                    floatfmt=(None, ".0f", ".2f", ".2f"))
