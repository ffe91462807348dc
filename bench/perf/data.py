"""Data-loading speed: train images/s of every backend over full epochs, same data, same batches.

Each backend's loaders are built first (files written, data moved to the device), then epochs are
interleaved across backends (epoch e of torch, memory, ffcv, then e + 1 ...), so the ratio to torch
compares like with like even when the machine's load drifts. The first epoch is a warm-up (FFCV
compiles its pipeline, caches fill) and is not timed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from bench.data.backends.base import backends as registered_backends
from bench.data.loaders import make_loaders
from bench.errors import BenchError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_epoch(loader, epoch: int, device: torch.device) -> tuple[int, float]:
    _sync(device)
    start = time.perf_counter()
    count = 0
    for images, labels, _ in loader.epoch(epoch):
        count += labels.shape[0]
        del images
    _sync(device)
    return count, time.perf_counter() - start


def measure_data(
    data_spec,
    workdir: Path,
    device: str | torch.device,
    batch_size: int = 64,
    epochs: int = 2,
    backends: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train images/s per backend over `epochs` full epochs (the first one untimed).

    One row per backend: backend, device, samples per epoch, timed epochs, images_per_s,
    ratio_to_torch (None where torch was not measured), setup_s (building the loaders, writing
    files on first use) and `skipped` (why a backend could not run here, else None).
    """
    backends = list(registered_backends()) if backends is None else backends
    if epochs < 2:
        raise ValueError(f"epochs: expected at least 2 (the first is a warm-up), got {epochs}")
    dev = torch.device(device)
    loaders: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for backend in backends:
        row = {"backend": backend, "device": str(dev), "samples": None, "timed_epochs": 0}
        row.update(images_per_s=None, ratio_to_torch=None, setup_s=None, skipped=None)
        rows[backend] = row
        start = time.perf_counter()
        try:
            spec = dataclasses.replace(data_spec, backend=backend)
            loaders[backend] = make_loaders(
                spec, batch_size=batch_size, seed=0, device=dev, workdir=Path(workdir)
            ).train
        except (BenchError, ImportError) as exc:
            row["skipped"] = str(exc)
            continue
        row["setup_s"] = time.perf_counter() - start
        row["samples"] = loaders[backend].num_samples
    totals = {backend: [0, 0.0] for backend in loaders}
    for epoch in range(epochs):
        for backend, loader in loaders.items():
            count, seconds = _run_epoch(loader, epoch, dev)
            if epoch > 0:
                totals[backend][0] += count
                totals[backend][1] += seconds
    for backend, (count, seconds) in totals.items():
        rows[backend]["timed_epochs"] = epochs - 1
        rows[backend]["images_per_s"] = count / seconds if seconds > 0 else float("inf")
    base = rows.get("torch", {}).get("images_per_s")
    for row in rows.values():
        if base and row["images_per_s"] is not None:
            row["ratio_to_torch"] = row["images_per_s"] / base
    return list(rows.values())


def format_data_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `measure_data` rows."""
    table = []
    for row in rows:
        if row["skipped"]:
            table.append([row["backend"], row["device"], "-", "-", "-", "-", row["skipped"]])
            continue
        ratio = row["ratio_to_torch"]
        table.append(
            [
                row["backend"],
                row["device"],
                row["samples"],
                f"{row['images_per_s']:,.0f}",
                "-" if ratio is None else f"{ratio:.2f}x",
                f"{row['setup_s']:.1f}",
                "",
            ]
        )
    headers = ["backend", "device", "samples/epoch", "images/s", "vs torch", "setup s", "note"]
    return tabulate(table, headers=headers, tablefmt="github")
