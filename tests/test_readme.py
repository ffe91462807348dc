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


def _cluster_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## One machine, one 8-GPU box, a SLURM cluster"):].split("\n## ")[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    return [block.strip().splitlines() for block in blocks]


def test_the_three_cluster_blocks_are_commands_kdbench_and_mlflow_accept(tmp_path, capsys):
    import shlex
    import subprocess
    import sys

    from bench.__main__ import main
    from bench.cli import build_parser
    from bench.launch.workers import parse_gpus, worker_slots

    one_machine, gpu_box, cluster = _cluster_blocks()
    parser = build_parser()
    for line in one_machine + gpu_box + cluster:
        words = shlex.split(line)
        if words[:3] == ["python", "-m", "bench"]:
            parser.parse_args(words[3:])  # exits (fails the test) on an unknown option
    box = parser.parse_args(shlex.split(gpu_box[0])[3:])
    assert len(worker_slots(box.workers, parse_gpus(box.gpus), box.workers_per_gpu, "cuda")) == 16
    # the SLURM dry run prints the array it would submit, reading no data
    dry_run = next(line for line in cluster if "--dry-run" in line)
    assert main([*shlex.split(dry_run)[3:], "--workdir", str(tmp_path)]) == 0
    assert "would submit 1 job array of 64 tasks for the 210 cells left" in capsys.readouterr().out
    # the server line uses options `mlflow server` has
    server = shlex.split(cluster[0])
    assert server[:2] == ["mlflow", "server"]
    help_text = subprocess.run([sys.executable, "-m", "mlflow", "server", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for word in server[2:]:
        if word.startswith("--"):
            assert word in help_text, word
