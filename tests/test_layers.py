"""Imports run one way between the layers; no first-party import hides inside a function.

cli → perf → launch → engine → data, store, references → spec → sources → methods, model_zoo;
report → store, references, spec (never the engine: a report needs no training code). `data` is
bench/data's loaders and preparation; `sources` is the rest of bench/data (the shared
augmentation, the datasets and the backends, each a registry), below the spec, whose dataset and
backend names and checks derive from them. `bench/errors.py`, `bench/files.py`, `bench/locks.py`,
`bench/output.py`, `bench/registry.py`, `bench/secrets.py`, `bench/vocabulary.py` and
`bench/workdir.py` are the base every bench layer may use. Inside bench/data the order is
transforms → datasets → backends → loaders.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("bench", "methods", "model_zoo")
BASE_MODULES = {"bench", "bench.errors", "bench.files", "bench.locks", "bench.output",
                "bench.registry", "bench.secrets", "bench.vocabulary", "bench.workdir"}

ALLOWED = {
    "cli": {"perf", "launch", "engine", "report", "data", "sources", "store", "references",
            "spec", "base", "methods", "model_zoo"},
    "perf": {"launch", "engine", "report", "data", "sources", "store", "references", "spec",
             "base", "methods", "model_zoo"},
    "launch": {"engine", "data", "sources", "store", "references", "spec", "base", "methods",
               "model_zoo"},
    "engine": {"data", "sources", "store", "references", "spec", "base", "methods", "model_zoo"},
    "report": {"store", "references", "spec", "base"},
    "references": {"spec", "base", "methods"},
    "data": {"sources", "spec", "base"},
    "store": {"spec", "base"},
    "spec": {"sources", "base", "methods", "model_zoo"},
    "sources": {"base", "methods"},
    "base": set(),
    "methods": set(),
    "model_zoo": set(),
}
# Only the command layers load a layer inside a function (so `bench list` never imports torch).
LAZY_FIRST_PARTY_ALLOWED = {"cli", "perf"}
# sharding (a rank's part of each batch of an epoch order) sits with the order it cuts
DATA_ORDER = {"augment": 0, "folder_transforms": 0, "strong_augment": 0, "sharding": 0,
              "datasets": 1, "backends": 2}
DATA_TOP = 3  # loaders, prepare, the package itself


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("methods", "model_zoo"):
        return parts[0]
    if module in BASE_MODULES:
        return "base"
    if module == "bench.__main__":
        return "cli"
    if parts[1] == "data" and data_rank(module) < DATA_TOP:
        return "sources"
    return parts[1]


def data_rank(module: str) -> int:
    parts = module.split(".")
    return DATA_ORDER.get(parts[2], DATA_TOP) if len(parts) > 2 else DATA_TOP


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(imported module, line, inside a function) for each first-party import in `tree`."""
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names = [base]
            if base in FIRST_PARTY or base.count(".") < 2:  # `from bench.data import cifar`
                names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in FIRST_PARTY:
                yield name, node.lineno, id(node) in nested


def resolve(name: str) -> str:
    """`bench.data.datasets.cifar` stays; `bench.errors.SpecError` becomes `bench.errors`."""
    parts = name.split(".")
    while parts:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts = parts[:-1]
    return name


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in `source` (the text of `module`) that breaks the contract."""
    found = []
    here = layer_of(module)
    for name, line, in_function in imported_modules(ast.parse(source), module, is_package):
        target = resolve(name)
        there = layer_of(target)
        where = f"{module}:{line} imports {target}"
        if in_function and here not in LAZY_FIRST_PARTY_ALLOWED:
            found.append(f"{where} inside a function (move it to the top, or fix the cycle)")
        if there != here and there not in ALLOWED[here]:
            found.append(f"{where}: {here} may not import {there}")
        if {here, there} <= {"data", "sources"} and data_rank(target) > data_rank(module):
            found.append(f"{where}: data imports run transforms → datasets → backends → loaders")
    return found


def project_files() -> list[Path]:
    return sorted(p for top in FIRST_PARTY for p in (ROOT / top).rglob("*.py"))


def test_every_import_follows_the_layer_contract():
    problems = []
    for path in project_files():
        problems += violations(
            path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
        )
    assert not problems, "\n".join(problems)


def test_every_module_belongs_to_a_known_layer():
    for path in project_files():
        assert layer_of(module_name(path)) in ALLOWED, path


@pytest.mark.parametrize(
    "module, source, expected",
    [
        ("bench.report.leaderboard", "from bench.engine import runner\n", "report may not"),
        ("bench.report.sections", "import torch\nfrom bench.engine.teachers import x\n", "report"),
        ("bench.spec.schema", "from bench.data.loaders import make_loaders\n", "spec may not"),
        ("bench.data.datasets.cifar", "from bench.spec import DataSpec\n", "sources may not"),
        ("bench.data.loaders", "from bench.store.trackers import FINISHED\n", "data may not"),
        ("bench.store.trackers", "from bench.engine.execute import run_tags\n", "store may not"),
        ("methods.kd", "from bench.spec import Recipe\n", "methods may not"),
        ("model_zoo.vgg", "import bench.errors\n", "model_zoo may not"),
        ("bench.data.datasets.cifar", "from bench.data.backends import torch_backend\n",
         "transforms"),
        ("bench.data.augment", "from bench.data.backends import gpu_backend\n", "transforms"),
        (
            "bench.data.datasets.registry",
            "def f():\n    from bench.data.datasets import imagefolder\n",
            "inside a function",
        ),
        ("bench.engine.execute", "def f():\n    import methods\n", "inside a function"),
    ],
)
def test_the_contract_check_catches_a_broken_edge(module, source, expected):
    problems = violations(source, module)
    assert problems and expected in problems[0], problems


def test_allowed_edges_pass_the_check():
    assert violations("from bench.spec import RunSpec\n", "bench.report.sections") == []
    assert violations("from bench.data.augment import normalize\n", "bench.data.loaders") == []
    assert violations("from bench.data.datasets import base\n", "bench.spec.schema") == []
    assert violations("def f():\n    from bench.engine import runner\n", "bench.cli.commands") == []


def test_no_method_after_dkd_is_named_in_the_engine_data_or_report_code():
    """Methods that need the teacher's classifier (wkd_l), their own optimizer (kd_dot) or two
    views (mlkd) are served through the method contract alone."""
    names = ("ttm", "wttm", "nkd", "wkd_l", "kd_dot", "mlkd", "WKD", "DOT", "MLKD")
    root = Path(__file__).resolve().parent.parent / "bench"
    found = []
    for folder in ("engine", "data", "report"):
        for path in (root / folder).rglob("*.py"):
            words = _code_words(ast.parse(path.read_text(encoding="utf-8")))
            found += [f"{path.relative_to(root)}: {name}" for name in names if name in words]
    assert not found, found


def _code_words(tree: ast.AST) -> set[str]:
    """Identifiers and string literals of the code; docstrings (which cite sources) and comments
    are not code."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.update(re.findall(r"[A-Za-z_]+", node.value))
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            words.add(node.name)
    return words


def _callers(names: set[str]) -> dict[str, set[str]]:
    """Function name -> the bench modules that call it."""
    found: dict[str, set[str]] = {name: set() for name in names}
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in found:
                    found[name].add(module_name(path))
    return found


def test_the_matrix_start_up_and_the_cell_loop_each_exist_once():
    """Every executor starts a matrix through launch/start.py and trains its cells through
    engine/loop.py: the steps of the start-up and the loop's body are called nowhere else."""
    start_up = {"remove_finished_checkpoints", "fetch_published_teachers", "remove_orphan_temps"}
    callers = _callers(start_up | {"_CellLoop", "execute_run", "start_matrix", "run_cells"})
    for step in start_up:
        assert callers[step] == {"bench.launch.start"}, (step, callers[step])
    assert callers["_CellLoop"] == {"bench.engine.loop"}
    # a run is trained by the loop (or, isolated, by its child; a teacher by its preparation)
    assert callers["execute_run"] == {"bench.engine.loop", "bench.engine.isolate",
                                      "bench.engine.teachers"}
    launching = {m for m in callers["start_matrix"] | callers["run_cells"]
                 if m.startswith("bench.launch.")}
    assert callers["run_cells"] <= launching and "bench.launch.start" in callers["start_matrix"]
