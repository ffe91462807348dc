"""The README's first command, end to end, into a temporary MLflow store."""

import csv
import html
import json
import re
import shlex

import pytest

from bench.__main__ import main
from bench.engine.binding import load_matrix
from bench.store.trackers import FINISHED, MlflowTracker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(smoke_workdir):
    """Exit code of `python -m bench run --matrix smoke`, run once for the module."""
    return main(["run", "--matrix", "smoke", "--workdir", str(smoke_workdir)])


def test_smoke_trains_every_cell_and_the_teacher(smoke_run, smoke_workdir):
    assert smoke_run == 0
    tracker = MlflowTracker(smoke_workdir)
    runs = tracker.search()
    assert all(r.status == FINISHED for r in runs)
    teachers = [r for r in runs if r.tags["role"] == "teacher"]
    students = [r for r in runs if r.tags["role"] == "student"]
    assert len(teachers) == 1
    cells = sorted((r.tags["method_label"], r.tags["seed"]) for r in students)
    assert cells == sorted((m, s) for m in ("ce", "kd", "dkd", "cakd") for s in ("0", "1"))

    chance = 100.0 / 10
    teacher_top1 = tracker.history(teachers[0].run_id, "test/top1")[-1][1]
    assert teacher_top1 >= 3 * chance
    expected_terms = {
        "ce": ["ce"],
        "kd": ["ce", "kd"],
        "dkd": ["ce", "tckd", "nckd"],
        "cakd": ["ce", "bcd", "scd", "wcd"],
    }
    for run in students:
        epochs = [step for step, _ in tracker.history(run.run_id, "test/top1")]
        assert epochs == [1, 2, 3]
        for term in ["loss"] + expected_terms[run.tags["method"]]:
            assert len(tracker.history(run.run_id, f"train/{term}")) == 3, term
        assert run.metrics["last_top1"] >= 3 * chance, run.tags["mlflow.runName"]
        if run.tags["method"] != "ce":
            assert run.tags["teacher_sha256"] and run.metrics["teacher_top1"] >= 3 * chance


def test_the_smoke_numbers_show_something(smoke_run, smoke_workdir):
    """A teacher well below 100%, students below it, and methods that differ (loose ranges: these
    hold for other seeds of the generator and the runs; the numbers rank nothing)."""
    runs = MlflowTracker(smoke_workdir).search()
    teacher = next(r for r in runs if r.tags["role"] == "teacher")
    teacher_top1 = teacher.metrics["last_top1"]
    assert 70.0 <= teacher_top1 < 95.0
    by_method: dict[str, list[float]] = {}
    for run in runs:
        if run.tags["role"] == "student":
            by_method.setdefault(run.tags["method"], []).append(run.metrics["last_top1"])
    means = {m: sum(v) / len(v) for m, v in by_method.items()}
    assert means["ce"] < teacher_top1 - 5.0, (means, teacher_top1)
    assert max(means.values()) - min(means.values()) > 1.0, means


def test_second_run_trains_nothing(smoke_run, smoke_workdir, capsys):
    before = len(MlflowTracker(smoke_workdir).search())
    assert main(["run", "--matrix", "smoke", "--workdir", str(smoke_workdir)]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out
    assert "0 trained, 8 already finished" in out
    assert len(MlflowTracker(smoke_workdir).search()) == before


def test_report_has_a_row_with_mean_std_per_method(smoke_run, smoke_workdir, tmp_path):
    assert (
        main(
            ["report", "--matrix", "smoke", "--workdir", str(smoke_workdir), "--out", str(tmp_path)]
        )
        == 0
    )
    text = (tmp_path / "README.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| teacher"))
    labels = [c.strip() for c in header.strip("|").split("|")][2:]
    assert sorted(labels) == ["cakd", "ce", "dkd", "kd"]
    row = next(line for line in text.splitlines() if line.startswith("| resnet20"))
    cells = re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d) \((\d)\)", row)
    assert len(cells) == 4 and all(n == "2" for *_, n in cells)
    means = [float(m) for m, *_ in cells]
    assert means == sorted(means, reverse=True)  # one pair: the mean-rank order is best first
    assert re.search(r"resnet20 \(\d+\.\d\d\)", row)  # the teacher's re-scored accuracy

    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    matrix = load_matrix("smoke", workdir=smoke_workdir)
    kd_last = [float(r["last_top1"]) for r in rows if r["method_label"] == "kd"]
    mean = sum(kd_last) / 2
    assert f"{mean:.2f} ± " in row.split("|")[3 + labels.index("kd")]
    assert {r["cell_key"] for r in rows} == {run.cell_key for run in matrix.runs}


def test_the_leaderboard_of_the_smoke_matrix_opens_in_chromium_and_ranks_nothing(
    smoke_run, smoke_workdir, tmp_path
):
    """The README's first command, then `python -m bench leaderboard`: a site whose index opens
    in Chromium without a console error and says in words that one pair ranks nothing."""
    from tests import browser

    assert smoke_run == 0
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--workdir", str(smoke_workdir), "--out", str(out)]) == 0
    text = (out / "index.html").read_text()
    assert "1 block and 4 methods in every block: too few for any test across blocks. This " \
        "leaderboard ranks nothing" in text
    assert "each run&#x27;s own last-epoch img/s (not a controlled measurement" in text
    # a controlled measurement of the matrix replaces the runs' own speeds in both
    assert main(["perf", "--matrix", "smoke", "--steps", "2", "--device", "cpu", "--workdir",
                 str(smoke_workdir)]) == 0
    measured = json.loads((smoke_workdir / "perf" / "matrix-smoke.json").read_text())
    speeds = measured["speeds"]["resnet20:resnet8"]
    assert sorted(speeds) == ["cakd", "ce", "dkd", "kd"] and min(speeds.values()) > 0
    assert main(["leaderboard", "--workdir", str(smoke_workdir), "--out", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["cost_source"].startswith("`python -m bench perf --matrix smoke` on ")
    dkd = next(m for m in board["rankings"][0]["methods"] if m["label"] == "dkd")
    assert dkd["time_per_image_vs_baseline"] == pytest.approx(speeds["kd"] / speeds["dkd"])
    report = tmp_path / "report"
    assert main(["report", "--matrix", "smoke", "--workdir", str(smoke_workdir), "--out",
                 str(report)]) == 0
    cost = (report / "README.md").read_text().split("## Cost per training image")[1]
    assert "measured by `python -m bench perf --matrix smoke` on " in cost
    assert f"{speeds['kd'] / speeds['dkd']:.2f}×" in cost
    driver = browser.start_chromium()
    try:
        assert browser.console_errors(driver, out / "index.html") == []
        assert browser.dead_links(driver, out / "index.html") == []
        assert browser.image_problems(driver, out / "index.html") == []
        pair = out / "pairs" / "synthetic-resnet20-resnet8.html"
        assert 'alt="test top-1 per epoch"' in pair.read_text()  # the runs' curves
        assert browser.image_problems(driver, pair) == []
    finally:
        driver.quit()


def test_every_leaderboard_number_names_its_run_and_the_command_that_trains_that_cell_alone(
    smoke_run, smoke_workdir, tmp_path, capsys
):
    assert smoke_run == 0
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--workdir", str(smoke_workdir), "--out", str(out)]) == 0
    (block,) = json.loads((out / "leaderboard.json").read_text())["blocks"]
    runs = {r.run_id: r for r in MlflowTracker(smoke_workdir).search()}
    entries = [e for label in block["runs"] for e in block["runs"][label]]
    assert len(entries) == 8
    page = (out / block["page"]).read_text()
    for entry in entries:
        record = runs[entry["run_id"]]
        assert record.tags["run_key"] and entry["top1"] is not None
        assert entry["command"] in html.unescape(page)
        argv = shlex.split(entry["command"])[3:]  # after `python -m bench`
        capsys.readouterr()
        assert main([*argv, "--dry-run", "--workdir", str(smoke_workdir)]) == 0
        execution, line, summary = capsys.readouterr().out.strip().splitlines()
        assert execution.startswith("execution: this process; device cpu")
        assert line.split()[:2] == ["finished", record.tags["cell_key"]]
        assert summary.startswith("1 cells: 1 finished")


def test_run_links_open_the_run_in_a_real_mlflow_server_ui(smoke_run, smoke_workdir, tmp_path,
                                                          monkeypatch):
    """The store served by `mlflow server`: a pair page's run link opens that run in MLflow's
    own UI (its name on the page), in Chromium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests import browser
    from tests.postgres_server import mlflow_server

    assert smoke_run == 0
    database = f"sqlite:///{smoke_workdir / 'mlflow.db'}"
    with mlflow_server(database, tmp_path / "artifacts", tmp_path / "mlflow.log") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        out = tmp_path / "leaderboard"
        assert main(["leaderboard", "--workdir", str(smoke_workdir), "--out", str(out)]) == 0
        (block,) = json.loads((out / "leaderboard.json").read_text())["blocks"]
        entry = block["runs"]["dkd"][0]
        driver = browser.start_chromium()
        try:
            driver.get((out / block["page"]).as_uri())
            link = driver.find_element(By.LINK_TEXT, entry["run_id"])
            assert link.get_attribute("href").startswith(url)
            link.click()
            WebDriverWait(driver, 60).until(
                lambda d: entry["run_name"] in d.find_element(By.TAG_NAME, "body").text
            )
        finally:
            driver.quit()
