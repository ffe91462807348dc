"""The README's two commands are what CI and users run: keep them in step with .ci/run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in _commands() if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.strip() in ci


def test_readme_main_command_runs_smoke_and_report():
    main_command = _commands()[0]
    assert "bench run --matrix smoke" in main_command
    assert "bench report --matrix smoke" in main_command
