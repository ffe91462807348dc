"""`python -m bench perf --suite`: the proof of a device in one command, written as one JSON
and one markdown table with the device's name:

- the `cuda`-marked tests (skipped, and said so, on a machine without CUDA);
- the loop table: the naive loop against kdbench's per backend, teacher-logit cache and precision,
  on resnet56 -> resnet20 and resnet32x4 -> resnet8x4 (the cache row's setup is its build time);
- a short fp32-against-bf16 A/B of one pair: a few epochs, 2 seeds, the top-1 gap with its 95%
  interval;
- matrix throughput (cells per hour) at 1, 2 and 4 runs per device.

Sizes: on a CPU everything is tiny, so CI runs the whole suite in about a minute and it cannot
rot. On a GPU they are sized for one H100 to end within 8 minutes, by estimate (no GPU has run
it yet): the loop table times 50 steps after 10 at batch 64 on 6,400 generated images (the
cache build, 6,400 x 162 teacher forwards, is the longest row); the A/B trains a 1-epoch
teacher and 2 students of 5 epochs on 10,000 images in each precision; the throughput matrix is
12 cells of 2 epochs on 400 images at 1, 2 and 4 runs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.files import atomic_write_text, within
from bench.launch.process import run_in_process
from bench.perf.training import PerfSetup, measure_training
from bench.perf.workers import PERF_MATRIX, measure_workers
from bench.report.stats import fmt_paired, paired
from bench.spec import build_matrix
from bench.store.trackers import JsonLinesTracker

LOOP_PAIRS = ("resnet56:resnet20", "resnet32x4:resnet8x4")


@dataclasses.dataclass(frozen=True)
class Size:
    loop_steps: int
    loop_warmup: int
    loop_per_class: int
    loop_classes: int
    loop_backends: tuple[str, ...]
    ab_classes: int
    ab_per_class: int
    ab_epochs: int
    runs_per_device: tuple[int, ...]
    throughput_seeds: int


SIZES = {
    "cpu": Size(loop_steps=1, loop_warmup=1, loop_per_class=2, loop_classes=4,
                loop_backends=("memory",), ab_classes=4, ab_per_class=16, ab_epochs=2,
                runs_per_device=(1, 2), throughput_seeds=1),
    "cuda": Size(loop_steps=50, loop_warmup=10, loop_per_class=64, loop_classes=100,
                 loop_backends=("memory", "torch", "ffcv"), ab_classes=100, ab_per_class=100,
                 ab_epochs=5, runs_per_device=(1, 2, 4), throughput_seeds=4),
}


def _cuda_tests(root: Path) -> dict:
    tests = root / "tests"
    if not tests.is_dir():
        return {"result": f"no tests folder at {tests}"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                           "no:cacheprovider", str(tests)], cwd=root, capture_output=True,
                          text=True)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"result": last, "exit_code": done.returncode,
            "seconds": time.perf_counter() - started}


def _loop_table(device: torch.device, size: Size, workdir: Path) -> list[dict]:
    rows = []
    for pair in LOOP_PAIRS:
        teacher, student = pair.split(":")
        setup = PerfSetup(teacher, student, "kd", device, 64, size.loop_steps, size.loop_warmup,
                          size.loop_classes, size.loop_per_class, workdir)
        for row in measure_training(setup, list(size.loop_backends), log=lambda line: None):
            rows.append({"pair": pair} | dataclasses.asdict(row))
    return rows


def _ab(device: torch.device, size: Size, workdir: Path) -> dict:
    """fp32 against bf16 on one pair (resnet56 -> resnet20, KD), 2 seeds, paired by seed."""
    spec = {
        "name": "perf_ab",
        "data": {"dataset": "synthetic", "synthetic": {
            "classes": size.ab_classes, "train_per_class": size.ab_per_class,
            "test_per_class": max(4, size.ab_per_class // 5)}},
        "recipe": {"epochs": size.ab_epochs, "batch_size": 64, "milestones": []},
        "teacher": {"recipe": {"epochs": 1}},
        "pairs": [{"teacher": "resnet56", "student": "resnet20"}],
        "methods": ["kd"], "seeds": 2,
    }
    top1 = {}
    for precision in ("fp32", "bf16"):
        matrix = build_matrix(spec, "perf", device=device.type, precision=precision)
        tracker = JsonLinesTracker(workdir / f"ab-{precision}")
        run_in_process(matrix, tracker=tracker, workdir=workdir / f"ab-{precision}",
                       device=device, log=lambda line: None)
        top1[precision] = {int(r.tags["seed"]): r.metrics["test/top1"] for r in tracker.search()
                           if r.tags.get("role") == "student" and "test/top1" in r.metrics}
    gap = paired(top1["bf16"], top1["fp32"])
    return {"top1": top1, "bf16_minus_fp32": fmt_paired(gap), "mean": gap.mean,
            "interval": gap.ci}


RUNS_PER_DEVICE = "runs-per-device.json"  # in <workdir>/perf/, for `bench plan`


def run_suite(device: torch.device, out: Path, root: Path, device_name: str,
              workdir: Path | None = None) -> Path:
    size = SIZES["cuda" if device.type == "cuda" else "cpu"]
    result: dict = {"device": device_name, "torch": torch.__version__,
                    "size": dataclasses.asdict(size)}
    seconds = result["seconds"] = {}
    with tempfile.TemporaryDirectory(prefix="kdbench-suite-") as folder:
        work = Path(folder)
        spec = PERF_MATRIX | {"seeds": size.throughput_seeds}
        parts = {
            "cuda_tests": lambda: _cuda_tests(root),
            "loop": lambda: _loop_table(device, size, work),
            "ab": lambda: _ab(device, size, work),
            "throughput": lambda: measure_workers(list(size.runs_per_device), device.type,
                                                  spec=spec),
        }
        for name, part in parts.items():
            started = time.perf_counter()
            result[name] = part()
            seconds[name] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "suite.json", json.dumps(result, indent=1, default=str))
    if workdir is not None:  # the plan reads K runs' throughput on this device from here
        atomic_write_text(within(Path(workdir) / "perf", RUNS_PER_DEVICE), json.dumps(
            {"device": device_name, "rows": result["throughput"]}, indent=1))
    atomic_write_text(out / "suite.md", _markdown(result))
    return out / "suite.md"


def _markdown(result: dict) -> str:
    loop = tabulate([[r["pair"], r["variant"], f"{r['images_per_s']:.0f}", f"{r['ratio']:.2f}x",
                      f"{r['setup_s']:.1f}" if r["setup_s"] else "", r["note"]]
                     for r in result["loop"]],
                    headers=["pair", "loop", "img/s", "vs naive", "setup s (cache build)",
                             "note"], tablefmt="github")
    rows = result["throughput"]
    throughput = tabulate([[r["workers"], r["cells"], f"{r['seconds']:.1f}",
                            f"{r['cells_per_hour']:.0f}", f"{r['ratio_to_first']:.2f}"]
                           for r in rows],
                          headers=["runs per device", "cells", "seconds", "cells per hour",
                                   "vs 1"], tablefmt="github")
    ab = result["ab"]
    return (
        f"# kdbench perf --suite on {result['device']} (torch {result['torch']})\n\n"
        f"## cuda-marked tests\n\n{result['cuda_tests']['result']}\n\n"
        f"## The training loop\n\n{loop}\n\n"
        f"## fp32 against bf16 (resnet56 -> resnet20, KD, 2 seeds)\n\n"
        f"top-1 fp32 {ab['top1']['fp32']}, bf16 {ab['top1']['bf16']}; bf16 - fp32: "
        f"{ab['bf16_minus_fp32']}\n\n"
        f"## Matrix throughput by runs per device\n\n{throughput}\n\n"
        f"Seconds per part: {result['seconds']}\n"
    )
