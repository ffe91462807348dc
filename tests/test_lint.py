"""The codebase stays ruff clean (the same check as `tox -e lint`)."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extra: pip install -e '.[test]'"
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


MAX_FUNCTION_LINES = 80  # a function a reader takes in at once


def _long_functions(source: str, where: str) -> list[str]:
    import ast

    return [f"{where}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_in_bench_is_longer_than_80_lines():
    long = [line for path in sorted((ROOT / "bench").rglob("*.py"))
            for line in _long_functions(path.read_text(), str(path.relative_to(ROOT)))]
    assert long == []
    body = "".join(f"    x = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def f():\n{body}", "f.py") == ["f.py:1 f (81 lines)"]


def test_no_formatter_markers():
    """No formatter runs here (ruff check is the gate, with its line length), so a marker that
    holds a formatter off would only mislead."""
    marked = [str(path.relative_to(ROOT)) for folder in ("bench", "methods", "model_zoo", "tests")
              for path in sorted((ROOT / folder).rglob("*.py"))
              if "fmt: " + "skip" in path.read_text()]
    assert marked == []
