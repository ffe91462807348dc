"""What the store holds for a run, written by the engine and read by the report: its tags."""

from __future__ import annotations

from typing import Protocol

from bench.spec import RunSpec
from bench.spec.schema import batchnorm_batch

# Tags the engine writes about how a run's numbers were computed (see engine.environment).
EXECUTION_TAGS = (
    "tf32_matmul",
    "tf32_cudnn",
    "cudnn_benchmark",
    "cudnn_deterministic",
    "deterministic_algorithms",
)
FINAL_METRICS = ("last_top1", "last_top5", "best_top1", "best_top5", "best_epoch", "best_val_top1",
                 "best_val_top5", "best_val_epoch", "teacher_top1")


class TeacherIdentity(Protocol):
    arch: str
    sha256: str


def run_tags(run: RunSpec, role: str, teacher: TeacherIdentity | None = None) -> dict[str, str]:
    """The tags a run is found by: its keys, its place in the matrix and its teacher."""
    tags = {
        "run_key": run.run_key,
        "cell_key": run.cell_key,
        "role": role,
        "matrix": run.matrix,
        "method": run.method.name,
        "method_label": run.method.label,
        "student": run.student,
        "seed": str(run.seed),
        "pairs": ",".join(run.pairs),
        "subset": str(run.data.is_subset).lower(),
        "mlflow.runName": run.name,
    }
    if teacher is not None:
        tags["teacher"] = teacher.arch
        tags["teacher_sha256"] = teacher.sha256
    return tags


# What of a run's execution changes its numbers (beyond the cell): runs that differ in it are never
# pooled in one report cell. Records made before a field was logged get its default.
NUMERICS = (
    ("precision", "fp32"),
    ("teacher_cache", "none"),
    ("memory_format", "channels_last"),
    ("deterministic", "false"),
    # which images a BatchNorm layer normalizes together: the per-device batch (DDP ranks
    # normalize their own part of the global batch), or 'none' for a model without BatchNorm
    ("batchnorm_batch", "the global batch"),
)


class RecordLike(Protocol):
    params: dict[str, str]
    tags: dict[str, str]


def numerics_of_record(record: RecordLike) -> tuple[str, ...]:
    """The numerics a stored run was made with. An fp32 CUDA run that ran with TF32 switched on
    (PyTorch's default for convolutions, before kdbench switched it off) counts as tf32."""
    params, tags = record.params, record.tags
    precision = str(params.get("precision", "fp32"))
    tf32 = "true" in (tags.get("tf32_matmul"), tags.get("tf32_cudnn"))
    if precision == "fp32" and tags.get("device_type") == "cuda" and tf32:
        precision = "tf32"
    return (
        precision,
        str(params.get("teacher_cache", "none")),
        str(params.get("memory_format", "channels_last")),
        str(tags.get("deterministic_algorithms", "false")),
        _batchnorm_batch_of_record(params),
    )


def _batchnorm_batch_of_record(params: dict) -> str:
    """From the params every run logs; runs from before DDP were single processes."""
    try:
        batch_size = int(params.get("recipe.batch_size", 0))
        world_size = int(params.get("world_size", 1))
    except (TypeError, ValueError):
        return "unknown"
    sync_bn = str(params.get("recipe.sync_bn", False)).lower() == "true"
    return batchnorm_batch(str(params.get("student", "")), batch_size, world_size, sync_bn)


def numerics_of_run(run: RunSpec) -> tuple[str, ...]:
    """The numerics a run of this spec is made with (kdbench never turns deterministic mode on)."""
    execution = run.execution
    return (
        execution.precision,
        execution.teacher_cache,
        execution.memory_format,
        "false",
        run.batchnorm_batch,
    )


def describe_numerics(numerics: tuple[str, ...]) -> str:
    return ", ".join(f"{key} {value}" for (key, _), value in zip(NUMERICS, numerics, strict=True))
