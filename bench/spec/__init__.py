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
    PROTOCOL_VERSION,
    DataSpec,
    Execution,
    Matrix,
    MethodSpec,
    Recipe,
    RunSpec,
    SyntheticConfig,
    TeacherSpec,
    backend_names,
    check_backend,
    check_data,
    check_views,
    dataset_names,
    teacher_run,
)

__all__ = [
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
    "backend_names",
    "build_matrix",
    "check_backend",
    "check_data",
    "check_views",
    "dataset_names",
    "load_matrix",
    "parse_data",
    "read_matrix_yaml",
    "select",
    "shipped_matrices",
    "teacher_run",
]
