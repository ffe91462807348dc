"""`python -m bench doctor [--matrix M]`: will the matrix run here? One line per check, passed or
failed, and for each failure what fixes it. Exits 1 when a failed check blocks the matrix. It
trains nothing and takes seconds: a store that does not answer is asked once, without MLflow's
retries, and the data and teacher downloads are only looked up, never fetched."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.spec import Matrix

REACH_TIMEOUT_S = 5  # a download server or a store that does not answer within this is down
CACHE_VARIANTS = 162  # the CIFAR teacher-logit cache: augmentation variants per image
CIFAR_IMAGES, CIFAR_IMAGE_BYTES = 60_000, 32 * 32 * 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True  # a failure that stops the matrix (else a warning)

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.blocking else "warn")
        fix = f" -> fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark}  {self.name}: {self.detail}{fix}"


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    workdir: Path
    matrix: Matrix | None

    @property
    def wants_gpu(self) -> bool:
        """A matrix of real data on a machine asked for no particular device: hours per cell on
        a CPU, so a missing GPU blocks it."""
        if self.args.device == "cpu" or self.matrix is None:
            return False
        return self.matrix.data.dataset != "synthetic"


def _devices(ctx: Context) -> Check:
    count = torch.cuda.device_count()
    if count:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if count else "—"
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
        detail = (f"{count} x {names}; CUDA {torch.version.cuda}, cuDNN "
                  f"{torch.backends.cudnn.version()}, NCCL {nccl}, bf16 {bf16}")
        wants_bf16 = ctx.matrix is not None and ctx.matrix.runs[0].execution.precision == "bf16"
        if wants_bf16 and bf16 == "no":
            return Check("devices", False, detail, "--precision fp32 (this GPU has no bf16)")
        return Check("devices", True, detail)
    build = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    return Check(
        "devices", False, f"no CUDA device ({build}); runs would train on the CPU",
        "a machine with an NVIDIA GPU and a CUDA build of torch (see pytorch.org), or "
        "--device cpu for a tiny matrix", blocking=ctx.wants_gpu,
    )


def _numerics(ctx: Context) -> Check:
    from bench.engine.environment import apply_precision, numerics_tags

    precision = ctx.matrix.runs[0].execution.precision if ctx.matrix else "fp32"
    apply_precision(precision)  # exactly as a run sets them
    flags = ", ".join(f"{k} {v}" for k, v in numerics_tags().items())
    return Check("numerics", True, f"precision {precision}: {flags}")


def _ffcv(ctx: Context) -> Check:
    needed = ctx.matrix is not None and ctx.matrix.data.backend == "ffcv"
    try:
        ffcv = importlib.import_module("ffcv")
        importlib.import_module("ffcv.libffcv")  # its C extension: libturbojpeg and OpenCV
    except Exception as exc:  # an ImportError, or a missing shared library (OSError)
        return Check(
            "ffcv", False, f"cannot import ({type(exc).__name__}: {exc})",
            "apt-get install libopencv-dev libturbojpeg0-dev pkg-config, then "
            "pip install -e '.[ffcv]'", blocking=needed,
        )
    return Check("ffcv", True, f"ffcv {getattr(ffcv, '__version__', '?')} and its libraries load")


def _workdir(ctx: Context) -> Check:
    try:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=ctx.workdir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("work directory", False, f"{ctx.workdir} is not writable ({exc.strerror})",
                     "--workdir (or $KDBENCH_HOME) on a writable disk")
    return Check("work directory", True, f"{ctx.workdir} is writable")


@contextlib.contextmanager
def _asked_once() -> Iterator[None]:
    """MLflow's client without its retries (minutes against a server that is down)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                      MLFLOW_HTTP_REQUEST_TIMEOUT=str(REACH_TIMEOUT_S))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _store(ctx: Context) -> Check:
    from bench.store.trackers import describe_store, open_tracker

    where = describe_store(ctx.args.tracking, ctx.workdir)
    try:
        with _asked_once():
            open_tracker(ctx.args.tracking, ctx.workdir)
    except (BenchError, OSError) as exc:
        return Check("store", False, str(exc),
                     "start the server, or unset MLFLOW_TRACKING_URI for the embedded sqlite "
                     "store")
    return Check("store", True, f"{where} opens for reading and writing")


def _claims(ctx: Context) -> Check | None:
    from bench.store.claims import CLAIMS_VARIABLE, check_claims, describe_claims

    if not (ctx.args.claims or os.environ.get(CLAIMS_VARIABLE)):
        return None
    where = describe_claims(ctx.workdir, ctx.args.claims)
    try:
        check_claims(ctx.workdir, ctx.args.claims)
    except BenchError as exc:
        return Check("claims", False, str(exc), f"a reachable postgresql:// URI in --claims or "
                     f"${CLAIMS_VARIABLE}, or neither for file locks")
    return Check("claims", True, f"{where} connect")


def _slurm(ctx: Context) -> Check | None:
    if ctx.args.executor != "slurm":
        return None
    try:
        importlib.import_module("submitit")
    except ImportError as exc:
        return Check("slurm", False, f"submitit does not import ({exc})",
                     "pip install -e '.[cluster]'")
    if shutil.which("sbatch") is None:
        return Check("slurm", False, "submitit imports, but no sbatch on PATH",
                     "run on a SLURM login node (or load its module)")
    return Check("slurm", True, "submitit imports and sbatch is on PATH")


def _reachable(url: str) -> str:
    """'' when `url` answers (a HEAD request), else why not."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        # a fresh opener: urlopen's global one keeps the proxies it first saw for the process
        with urllib.request.build_opener().open(request, timeout=REACH_TIMEOUT_S):
            return ""
    except Exception as exc:  # URLError, a proxy refusing, a time-out
        return " ".join(str(getattr(exc, "reason", exc)).split())[:120]


def _data(ctx: Context) -> Check | None:
    from bench.data.datasets.base import dataset_named
    from bench.data.datasets.registry import absent_reason, default_root, present_hash

    if ctx.matrix is None:
        return None
    data = ctx.matrix.data
    if present_hash(data, ctx.workdir) is not None:
        return Check("data", True, f"{data.dataset} present at {default_root(data, ctx.workdir)}")
    if data.dataset == "synthetic":
        return Check("data", True, "synthetic: generated on the first run")
    url = dataset_named(data.dataset).download_url()
    if url is not None:
        why = _reachable(url)
        if not why:
            return Check("data", True, f"{data.dataset} downloadable from {url}")
        root = default_root(data, ctx.workdir)
        return Check("data", False, f"{absent_reason(data, ctx.workdir)}; {url} unreachable "
                     f"({why})", f"copy {Path(url).name} into {root} (or set data.root)",
                     )
    return Check("data", False, absent_reason(data, ctx.workdir),
                 "python -m bench data prepare, or set data.root")


def _teachers(ctx: Context) -> list[Check]:
    """The released teachers the matrix needs: held (with their pins), or fetchable from here
    (their release's address answers; asked once per release)."""
    from bench.engine.published_teachers import published_teachers, release_folder
    from bench.references.teachers import teacher_release

    if ctx.matrix is None:
        return []
    wanted = sorted({t.arch for t in ctx.matrix.teachers if t.published})
    release = teacher_release(ctx.matrix.data.dataset)
    if not wanted or release is None:
        return []
    held = {t.arch: t for t in published_teachers(ctx.workdir) if t.dataset == release.dataset}
    pins = [f"{arch} {held[arch].pin}" for arch in wanted if arch in held and held[arch].pin]
    pinned = f"pinned: {', '.join(pins)}" if pins else "not pinned (keyed by each file's sha256)"
    missing = [a for a in wanted if a not in held or held[a].held.startswith("not fetched")]
    names = f"teachers {', '.join(wanted)}"
    if not missing:
        return [Check(names, True, f"all in the work directory; {pinned}")]
    url = release.url or (f"torchvision's weights ({release.torchvision_weights})"
                          if release.torchvision_weights else None)
    why = _reachable(release.url) if release.url else "" if url else "no download address"
    if not why:
        return [Check(names, True, f"{', '.join(missing)} fetched on the first run from {url}; "
                      f"{pinned}")]
    return [Check(
        names, False, f"{', '.join(missing)} not in the work directory and {url} unreachable "
        f"({why}); {pinned}",
        f"download {url} by hand into {release_folder(ctx.workdir, release)}",
    )]


def needed_bytes(matrix: Matrix) -> dict[str, int]:
    """What the matrix writes into the work directory, by kind (an estimate from the models'
    parameter counts and the dataset's size)."""
    import model_zoo
    from bench.data.datasets.registry import is_array_dataset

    parameters: dict[str, int] = {}
    for name in {r.student for r in matrix.runs} | {t.arch for t in matrix.teachers}:
        classes = matrix.data.num_classes or 100
        parameters[name] = int(model_zoo.describe(name, num_classes=classes)["params"])
    weights = sum(parameters[r.student] * 4 for r in matrix.runs)
    weights += sum(parameters[t.arch] * 4 for t in matrix.teachers)
    # a checkpoint per unfinished run: weights, SGD momentum and the method's state
    checkpoints = max(parameters.values()) * 4 * 3
    images, classes = CIFAR_IMAGES, matrix.data.num_classes or 100
    if matrix.data.dataset == "synthetic":
        config = matrix.data.synthetic_config
        images = config.classes * (config.train_per_class + config.test_per_class)
        classes = config.classes
    prepared = images * CIFAR_IMAGE_BYTES * (2 if matrix.data.backend == "ffcv" else 1)
    if not is_array_dataset(matrix.data.dataset):  # an image folder stays where it is
        prepared = 0
    cache = 0
    cache_dtype = matrix.runs[0].execution.teacher_cache
    if cache_dtype != "none":
        cache = len(matrix.teachers) * images * CACHE_VARIANTS * classes
        cache *= 2 if cache_dtype == "float16" else 4
    return {"weights": weights, "checkpoints": checkpoints, "prepared data": prepared,
            "teacher-logit cache": cache}


def _disk(ctx: Context) -> Check | None:
    from bench.engine.faults import disk_free

    if ctx.matrix is None or not ctx.workdir.is_dir():
        return None
    need = needed_bytes(ctx.matrix)
    total, free = sum(need.values()), disk_free(ctx.workdir)
    parts = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in need.items() if v)
    detail = f"needs about {total / 1e9:.2f} GB ({parts}); {free / 1e9:.2f} GB free"
    if free < total:
        return Check("disk", False, detail, f"free {(total - free) / 1e9:.2f} GB at "
                     f"{ctx.workdir}, or --workdir on a larger disk")
    return Check("disk", True, detail)


CHECKS: list[Callable[[Context], Check | list[Check] | None]] = [
    _devices, _numerics, _ffcv, _workdir, _store, _claims, _slurm, _data, _teachers, _disk,
]


def run_doctor(args: argparse.Namespace, workdir: Path, matrix: Matrix | None) -> int:
    ctx = Context(args, workdir, matrix)
    blocked = 0
    for check in CHECKS:
        try:
            found = check(ctx)
        except Exception as exc:  # a check that cannot even look: say so, as a failure
            name = check.__name__.strip("_").replace("_", " ")
            found = Check(name, False, f"could not be checked ({type(exc).__name__}: {exc})")
        for item in found if isinstance(found, list) else [found] if found else []:
            print(item.line())
            blocked += not item.ok and item.blocking
    subject = f"matrix {matrix.name}" if matrix is not None else "kdbench"
    print(f"{subject}: {'ready' if not blocked else f'{blocked} check(s) block it'} here")
    return 1 if blocked else 0
