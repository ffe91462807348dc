"""The report's cost table: each method's training speed beside its rank, relative to the
baseline on the same pairs (a two-view method is not compute-matched to KD)."""

from __future__ import annotations

from bench.report import write_report
from bench.spec import build_matrix
from bench.store.trackers import JsonLinesTracker
from tests.test_report_units import log_finished

MATRIX = {
    "name": "cost",
    "pairs": [{"teacher": "resnet56", "student": "resnet20"},
              {"teacher": "resnet110", "student": "resnet32"}],
    "methods": ["kd", "mlkd", "dkd"],
    "data": {"dataset": "synthetic"},
    "seeds": 2,
}
# img/s per (student, method): mlkd is 2.5x kd's time per image on resnet20, 2x on resnet32
SPEED = {("resnet20", "kd"): 1000.0, ("resnet20", "mlkd"): 400.0, ("resnet20", "dkd"): 900.0,
         ("resnet32", "kd"): 600.0, ("resnet32", "mlkd"): 300.0, ("resnet32", "dkd"): 600.0}
TOP1 = {"kd": 70.0, "mlkd": 72.0, "dkd": 71.0}


def test_the_cost_table_puts_each_methods_time_per_image_vs_kd_beside_its_rank(tmp_path):
    matrix = build_matrix(MATRIX, "t", data_hash="abc")
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, lambda run: {
        "last_top1": TOP1[run.method.name] + run.seed * 0.1, "best_top1": 75.0,
        "img_per_s": SPEED[(run.student, run.method.name)] + run.seed})
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    section = text[text.index("## Cost per training image"):].split("\n## ")[0]
    rows = {cells[0]: cells for line in section.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]}
    # geometric mean over the pairs of kd's median img/s over the method's
    mlkd = ((1000.5 / 400.5) * (600.5 / 300.5)) ** 0.5
    assert rows["mlkd"] == ["mlkd", "4", "350", f"{mlkd:.2f}×", "1.00"]
    dkd = ((1000.5 / 900.5) * (600.5 / 600.5)) ** 0.5
    assert rows["dkd"] == ["dkd", "4", "750", f"{dkd:.2f}×", "2.00"]
    assert rows["kd"][3:] == ["1.00×", "3.00"]
