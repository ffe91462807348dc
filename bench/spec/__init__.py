"""Spec: what a benchmark is. Matrix YAML in, validated and fully resolved RunSpecs out, with
stable keys. Expanding a matrix reads no data and touches no network."""

from bench.spec.matrix import (
    apply_overrides,
    build_matrix,
    load_matrix,
    parse_data,
    read_matrix_yaml,
    select,
    shipped_matrices,
)
from bench.spec.schema import (
    BACKENDS,
    DATASETS,
    FFCV_IMAGE_ENCODING,
    PROTOCOL_VERSION,
    DataSpec,
    Execution,
    Matrix,
    MethodSpec,
    Recipe,
    RunSpec,
    SyntheticConfig,
    TeacherSpec,
    check_backend,
    check_data,
    teacher_run,
)

__all__ = [
    "BACKENDS",
    "DATASETS",
    "FFCV_IMAGE_ENCODING",
    "PROTOCOL_VERSION",
    "DataSpec",
    "Execution",
    "Matrix",
    "MethodSpec",
    "Recipe",
    "RunSpec",
    "SyntheticConfig",
    "TeacherSpec",
    "apply_overrides",
    "build_matrix",
    "check_backend",
    "check_data",
    "load_matrix",
    "parse_data",
    "read_matrix_yaml",
    "select",
    "shipped_matrices",
    "teacher_run",
]
