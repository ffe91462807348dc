"""Binding a matrix to its data: the engine reads (generates, downloads) the data once and puts
its content hash into every cell key."""

from __future__ import annotations

import os
from pathlib import Path

from bench import spec
from bench.data.datasets.registry import absent_reason, dataset_hash, present_hash
from bench.engine.published_teachers import bind_published_teachers
from bench.spec import Matrix
from bench.workdir import resolve_workdir


def bind_data(matrix: Matrix, workdir: Path) -> Matrix:
    """`matrix` with the content hash of its data in every key (the data is made ready first),
    and the sha256 of each released teacher file (fetched first) in its students' keys."""
    if any(run.data_hash is None for run in matrix.runs):
        matrix = matrix.bind_data_hash(dataset_hash(matrix.data, Path(workdir)))
    return bind_published_teachers(matrix, Path(workdir))


def bind_present_data(matrix: Matrix, workdir: Path) -> tuple[Matrix, str]:
    """`matrix` keyed by the data already on disk, or unkeyed with the reason why (nothing is
    generated, downloaded or fetched: for the dry run, `--print-spec` and the plan)."""
    data_hash = present_hash(matrix.data, workdir)
    if data_hash is None:
        return matrix, absent_reason(matrix.data, workdir)
    matrix = bind_published_teachers(matrix.bind_data_hash(data_hash), workdir, fetch=False)
    unfetched = sorted({t.arch for t in matrix.teachers if not t.bound})
    if unfetched:
        return matrix, (
            f"released teacher {', '.join(unfetched)} not fetched yet (the sha256 of its file "
            "is part of its students' keys)"
        )
    return matrix, ""


def load_matrix(
    name_or_path: str, *, workdir: str | os.PathLike | None = None, **options
) -> Matrix:
    """`bench.spec.load_matrix` with the data hash bound: a matrix ready to run."""
    return bind_data(spec.load_matrix(name_or_path, **options), resolve_workdir(workdir))
