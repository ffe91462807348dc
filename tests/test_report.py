"""`bench report` on a store filled with chosen numbers: every figure in the README and runs.csv
is checked against a plain computation here (means, sample stds, paired Δ with its t interval,
best-marking, the like-for-like published comparison, failed/blocked/missing cells, plots)."""

import csv
import math
import re
from types import SimpleNamespace

import pytest
from matplotlib.image import imread

from bench.__main__ import main
from bench.engine.teachers import teacher_run
from bench.report import Results, collect, fetch_histories, pair_figures
from bench.spec import load_matrix
from bench.store.schema import run_tags
from bench.store.trackers import FAILED, FINISHED, MlflowTracker

HASH = "feedfacecafebeef"  # the data content hash: no data is read
T2 = 4.3027  # t_{0.975, 2}: three common seeds
MATRIX = """\
name: reptest
description: A test matrix with chosen numbers.
data: {dataset: cifar100, backend: torch}
recipe: {epochs: 3, batch_size: 64, lr: 0.05, milestones: [2]}
teacher: {seed: 0}
pairs:
  - {teacher: resnet56, student: resnet20, params: {dkd: {beta: 2}, cakd: {w_wcd: 2}}}
  - {teacher: wrn_40_2, student: wrn_16_2, params: {dkd: {beta: 6}, cakd: {w_wcd: 6}}}
  - {teacher: vgg13, student: vgg8, params: {dkd: {beta: 6}, cakd: {w_wcd: 6}}}
methods: [ce, kd, dkd, cakd]
seeds: 3
"""
A, B, C = ("resnet56", "resnet20"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8")
TEACHER_TOP1 = {"resnet56": 72.0, "wrn_40_2": 76.1}
# last-epoch top-1 per (pair, method) and seed; None: that run is not finished (see below)
LAST = {
    # A: dkd ahead of the runner-up (cakd) with a clear interval -> bold
    (A, "ce"): [69.0, 69.5, None],  # seed 2 missing: never run
    (A, "kd"): [70.6, 70.9, 70.4],
    (A, "dkd"): [72.0, 72.3, 71.9],
    (A, "cakd"): [71.0, 71.6, 70.8],
    # B: dkd ahead of kd by mean, interval includes 0 -> nothing bold
    (B, "ce"): [73.0, 73.3, 73.1],
    (B, "kd"): [74.9, 75.5, 74.0],
    (B, "dkd"): [75.0, 74.6, 76.4],
    (B, "cakd"): [74.0, 74.2, None],  # seed 2 FAILED at epoch 2
    # C: its teacher failed: kd/dkd/cakd blocked; ce (no teacher) finished
    (C, "ce"): [70.1, 70.5, 70.2],
}


def best_of(last: float, seed: int) -> float:
    """The best-epoch top-1 of a run, a little above its last (differently per method)."""
    return round(last + 0.25 * (seed + 1) + 0.3 * (last % 1.0), 4)


def mean(xs):
    return sum(xs) / len(xs)


def sd(xs):
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def cell(xs):
    return f"{mean(xs):.2f} ± {sd(xs):.2f} ({len(xs)})"


def delta(a, b):
    d = [x - y for x, y in zip(a, b, strict=True)]
    half = T2 * sd(d) / math.sqrt(len(d))
    return f"{mean(d):+.2f} [{mean(d) - half:+.2f}, {mean(d) + half:+.2f}] ({len(d)})"


def values(pair, label, metric="last"):
    out = [x for x in LAST[(pair, label)] if x is not None]
    if metric == "best":
        out = [best_of(x, s) for s, x in enumerate(LAST[(pair, label)]) if x is not None]
    return out


ENV = {"git_sha": "abc123def", "kdbench_version": "0.1.0", "device_name": "test-cpu"}


def log_run(tracker, run, *, last, status=FINISHED, teacher_top1=None, fail_epoch=None):
    teacher = SimpleNamespace(arch=run.teacher.arch, sha256="ab" * 32) if run.teacher else None
    run_id = tracker.start(run.name, run.flat_params(), run_tags(run, run.role, teacher) | ENV)
    if teacher_top1 is not None:
        tracker.log_metrics(run_id, {"teacher_top1": teacher_top1}, step=0)
    if status == FAILED:
        tracker.log_metrics(run_id, {"test/top1": 10.0}, step=1)
        tracker.set_tags(
            run_id, {"failure_reason": "loss is NaN", "failure_epoch": str(fail_epoch)}
        )
        tracker.finish(run_id, FAILED)
        return run_id
    best = best_of(last, run.seed)
    for epoch, value in enumerate([last - 2.0, best, last], start=1):
        tracker.log_metrics(run_id, {"test/top1": value}, step=epoch)
    final = {"last_top1": last, "last_top5": 90.0, "best_top1": best, "best_top5": 91.0}
    tracker.log_metrics(run_id, final | {"best_epoch": 2}, step=3)
    tracker.finish(run_id, FINISHED)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    path = root / "reptest.yaml"
    path.write_text(MATRIX)
    matrix = load_matrix(str(path), data_hash=HASH)
    tracker = MlflowTracker(root / "work")
    # the vgg13 teacher failed during its own training: its students are blocked
    vgg13 = next(r for r in matrix.runs if r.teacher and r.teacher.arch == "vgg13")
    vgg13_teacher = teacher_run(vgg13.teacher, vgg13)
    tags = run_tags(vgg13_teacher, "teacher", None)
    teacher_id = tracker.start(vgg13_teacher.name, vgg13_teacher.flat_params(), tags)
    tracker.set_tags(teacher_id, {"failure_reason": "diverged", "failure_epoch": "7"})
    tracker.finish(teacher_id, FAILED)
    for run in matrix.runs:
        pair = tuple(run.pairs[0].split(":"))
        key = (pair, run.method.label)
        if key not in LAST:
            continue  # blocked: never started
        last = LAST[key][run.seed]
        top1 = TEACHER_TOP1.get(run.teacher.arch) if run.teacher else None
        if last is None and key == (B, "cakd"):
            log_run(tracker, run, last=0.0, status=FAILED, fail_epoch=2, teacher_top1=top1)
        elif last is not None:
            log_run(tracker, run, last=last, teacher_top1=top1)
    # a run of the same matrix on a data subset: a cell of another matrix, never mixed in
    subset = load_matrix(str(path), data_hash=HASH, subset_per_class=5)
    subset_kd = next(r for r in subset.runs if r.method.label == "kd" and r.seed == 0)
    log_run(tracker, subset_kd, last=5.0, teacher_top1=60.0)
    out = root / "out"
    code = main(["report", "--matrix", str(path), "--workdir", str(root / "work"),
                 "--out", str(out), "--format", "html"])
    return SimpleNamespace(root=root, path=path, matrix=matrix, tracker=tracker, out=out, code=code)


def table_row(text: str, heading: str, first_cells: list[str]) -> list[str]:
    """The cells of the row starting with `first_cells` in the first table after `heading`."""
    section = text[text.index(heading) :]
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[: len(first_cells)] == first_cells:
                return cells
    raise AssertionError(f"no row {first_cells} after {heading!r}")


def test_report_command_succeeds(store):
    assert store.code == 0
    assert (store.out / "README.md").is_file() and (store.out / "runs.csv").is_file()


def _columns_by_mean_rank(pairs, labels):
    ranks = {label: [] for label in labels}
    for pair in pairs:
        means = {label: mean(values(pair, label)) for label in labels
                 if (pair, label) in LAST and values(pair, label)}
        if len(means) < 2:
            continue
        for label, m in means.items():  # rank 1 = best; no ties in this store
            ranks[label].append(1 + sum(other > m for other in means.values()))
    return sorted(labels, key=lambda label: sum(ranks[label]) / len(ranks[label]))


def test_leaderboard_means_stds_n_and_best_marking(store):
    text = (store.out / "README.md").read_text()
    heading = "## Leaderboard: last-epoch"
    header = table_row(text, heading, ["teacher (top-1)", "student"])[2:]
    assert header == _columns_by_mean_rank((A, B, C), ["ce", "kd", "dkd", "cakd"])
    assert header != ["ce", "kd", "dkd", "cakd"]  # the matrix order is not the rank order
    row_a = dict(zip(header, table_row(text, heading, ["resnet56 (72.00)", "resnet20"])[2:],
                     strict=True))
    assert row_a == {
        "ce": cell(values(A, "ce")),
        "kd": cell(values(A, "kd")),
        "dkd": "**" + cell(values(A, "dkd")) + "**",  # clear lead over cakd, the runner-up
        "cakd": cell(values(A, "cakd")),
    }
    row_b = dict(zip(header, table_row(text, heading, ["wrn_40_2 (76.10)", "wrn_16_2"])[2:],
                     strict=True))
    assert row_b == {m: cell(values(B, m)) for m in ("ce", "kd", "dkd", "cakd")}  # no bold
    assert "(2)" in row_b["cakd"]  # the failed seed is not counted
    row_c = dict(zip(header, table_row(text, heading, ["vgg13", "vgg8"])[2:], strict=True))
    assert row_c == {"ce": cell(values(C, "ce")), "kd": "—", "dkd": "—", "cakd": "—"}
    # the best-epoch table beside it, in the same column order
    row_a_best = table_row(text, "### Best-epoch", ["resnet56 (72.00)", "resnet20"])
    assert row_a_best[2 + header.index("kd")] == cell(values(A, "kd", "best"))


def test_the_lead_check_is_the_paired_interval(store):
    text = (store.out / "README.md").read_text()
    lead_a = table_row(text, "### Leads", ["resnet56", "resnet20", "last"])
    assert lead_a[3:] == ["dkd", "cakd", delta(values(A, "dkd"), values(A, "cakd")), "yes"]
    lead_b = table_row(text, "### Leads", ["wrn_40_2", "wrn_16_2", "last"])
    assert lead_b[3:5] == ["dkd", "kd"]
    assert lead_b[5] == delta(values(B, "dkd"), values(B, "kd"))
    assert lead_b[6] == "no: interval includes 0"


def test_delta_vs_kd_is_paired_by_seed_with_a_t_interval(store):
    text = (store.out / "README.md").read_text()
    row = table_row(text, "### Δ vs KD, last-epoch", ["resnet56", "resnet20"])
    # ce has seeds 0 and 1 only: the pairing drops kd's seed 2
    ce, kd = values(A, "ce"), values(A, "kd")[:2]
    d = [x - y for x, y in zip(ce, kd, strict=True)]
    half = 12.7062 * sd(d) / math.sqrt(2)
    assert row[2] == f"{mean(d):+.2f} [{mean(d) - half:+.2f}, {mean(d) + half:+.2f}] (2)"
    assert row[3] == delta(values(A, "dkd"), values(A, "kd"))
    assert row[4] == delta(values(A, "cakd"), values(A, "kd"))
    row_b = table_row(text, "### Δ vs KD, last-epoch", ["wrn_40_2", "wrn_16_2"])
    d = [x - y for x, y in zip(values(B, "cakd"), values(B, "kd")[:2], strict=True)]
    assert row_b[4].startswith(f"{mean(d):+.2f} [") and row_b[4].endswith("(2)")
    row_best = table_row(text, "### Δ vs KD, best-epoch", ["resnet56", "resnet20"])
    assert row_best[3] == delta(values(A, "dkd", "best"), values(A, "kd", "best"))


def test_published_numbers_of_another_setup_list_every_difference(store):
    """This store's matrix trains its teachers for 3 epochs: nothing is like for like, and every
    row says why (tests/test_comparable.py covers the comparable case)."""
    text = (store.out / "README.md").read_text()
    heading = "## Published numbers"
    teacher = table_row(text, heading, ["resnet56", "resnet20", "teacher"])
    assert teacher[5] == "72.34"
    assert teacher[7] == "not comparable: teacher self-trained: another file than the released one"
    recipe = "epochs 3 ≠ 240; milestones [2] ≠ [150, 180, 210]"
    kd = table_row(text, heading, ["resnet56", "resnet20", "kd"])  # CRD: last epoch
    assert kd[5] == "70.66" and kd[6].startswith("last: last epoch of 240")
    assert kd[7] == (
        f"not comparable: {recipe}; teacher self-trained (re-scored 72.00, published 72.34)"
    )
    assert kd[8] == ""  # no agreement verdict without a like-for-like Δ
    dkd = table_row(text, heading, ["resnet56", "resnet20", "dkd"])  # DKD: best epoch, 5 runs
    assert dkd[5] == "71.97" and dkd[6].endswith("(mean of 5)")
    assert dkd[7] == (
        f"not comparable: {recipe}; teacher self-trained (re-scored 72.00, published 72.34); "
        "seeds: 3 finished runs < the published mean of 5"
    )
    cakd = table_row(text, heading, ["resnet56", "resnet20", "cakd"])
    assert cakd[5] == "not published"
    ce_c = table_row(text, heading, ["vgg13", "vgg8", "ce"])
    assert ce_c[7] == f"not comparable: {recipe}"
    # methods not run here are shown for context, with their metric, runs and setup, never diffed
    context = table_row(text, "Published methods this matrix does not run", list(A))[2]
    assert "crd 71.16 (last, runs not stated; setup crd_cifar100);" in context
    assert "reviewkd 71.89 (best, runs not stated; setup ls_cifar100)" in context
    assert "mlkd 72.19 (best, mean of 4; setup mlkd_cifar100)" in context


def test_failed_blocked_and_missing_cells_are_listed(store):
    text = (store.out / "README.md").read_text()
    section = text[text.index("## Failed, blocked and missing cells") :]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    by_name = {r[0]: r for r in rows}
    failed = by_name["wrn_40_2->wrn_16_2 cakd seed2"]
    assert failed[2:5] == ["failed", "loss is NaN", "2"]
    assert by_name["resnet20 ce seed2"][2:4] == ["missing", "not run"]
    blocked = [r for r in rows if r[2] == "blocked"]
    assert len(blocked) == 3 * 3  # vgg13 -> vgg8 kd, dkd, cakd x 3 seeds
    assert all(r[3] == "teacher vgg13 failed: diverged" and r[4] == "7" for r in blocked)
    assert len(rows) == 1 + 1 + 9
    seed_row = table_row(text, "## Per seed", ["wrn_40_2", "wrn_16_2", "cakd"])
    assert seed_row[3:] == [
        f"74.00 / {best_of(74.0, 0):.2f}",
        f"74.20 / {best_of(74.2, 1):.2f}",
        "FAILED (epoch 2)",
    ]


def test_runs_csv_has_every_cell_parameter_and_final_metric(store):
    with open(store.out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(store.matrix.runs) == 3 * 4 * 3
    assert {r["cell_key"] for r in rows} == {run.cell_key for run in store.matrix.runs}
    params = set(store.matrix.runs[0].flat_params())
    assert params <= set(rows[0])
    by_name = {r["name"]: r for r in rows}
    dkd = by_name["resnet56->resnet20 dkd seed1"]
    assert float(dkd["last_top1"]) == 72.3 and float(dkd["best_top1"]) == best_of(72.3, 1)
    assert dkd["status"] == "FINISHED" and dkd["method.beta"] == "2.0" and dkd["seed"] == "1"
    assert dkd["git_sha"] == "abc123def" and dkd["teacher_top1"] == "72.0"
    failed = by_name["wrn_40_2->wrn_16_2 cakd seed2"]
    assert failed["status"] == "FAILED" and failed["failure_reason"] == "loss is NaN"
    assert by_name["resnet20 ce seed2"]["status"] == "MISSING"
    assert by_name["vgg13->vgg8 kd seed0"]["state"] == "blocked"
    # the subset run (last 5.0) belongs to another cell and appears nowhere
    assert all(r["last_top1"] != "5.0" for r in rows)


def test_protocol_names_data_recipe_seeds_metric_and_provenance(store):
    text = (store.out / "README.md").read_text()
    protocol = text[text.index("## Protocol") : text.index("## Leaderboard")]
    for expected in (
        "`cifar100`, full train and test sets",
        HASH,
        "3 epochs, batch 64, SGD lr 0.05",
        "Seeds: 0, 1, 2",
        "**last-epoch**",
        "backend `torch`",
        "`test-cpu`",
        "git SHA `abc123def`",
        "kdbench `0.1.0`",
        "resnet56: trained with CE",
    ):
        assert expected in protocol, expected


def test_plots_exist_decode_and_have_one_line_and_bar_per_method(store):
    text = (store.out / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", text)
    assert len(images) == 3 * 2  # curves and bars for each pair (vgg8 has its ce runs)
    for image in images:
        path = store.out / image
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert imread(path).shape[0] > 100

    results = Results(store.matrix, collect(store.matrix, store.tracker))
    ids = [c.record.run_id for c in results.cells if c.state == "finished"]
    figures = pair_figures(store.matrix, results, fetch_histories(store.tracker, ids, "test/top1"),
                           "last")
    for pair, methods_with_runs in ((A, 4), (B, 4), (C, 1)):
        curves = figures[pair]["curves"].axes[0]
        assert len(curves.get_lines()) == methods_with_runs
        assert len(curves.get_legend().get_texts()) == methods_with_runs
        bars = figures[pair]["bars"].axes[0]
        assert len(bars.patches) == methods_with_runs
    labels = [t.get_text() for t in figures[A]["curves"].axes[0].get_legend().get_texts()]
    assert labels == ["ce (n=2)", "kd (n=3)", "dkd (n=3)", "cakd (n=3)"]
    kd_line = figures[A]["curves"].axes[0].get_lines()[1]
    kd = values(A, "kd")
    assert list(kd_line.get_ydata()) == pytest.approx(
        [mean([x - 2 for x in kd]), mean([best_of(x, s) for s, x in enumerate(kd)]), mean(kd)]
    )


def test_html_and_latex_outputs(store, tmp_path):
    html = (store.out / "README.html").read_text()
    assert "<table>" in html and "<b>" + cell(values(A, "dkd")) + "</b>" in html
    assert '<img src="plots/' in html
    assert main(["report", "--matrix", str(store.path), "--workdir", str(store.root / "work"),
                 "--out", str(tmp_path), "--format", "latex", "--metric", "best"]) == 0
    tex = (tmp_path / "tables.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{" in tex and "$\\pm$" in tex
    text = (tmp_path / "README.md").read_text()
    assert "## Leaderboard: best-epoch" in text and "**best-epoch**" in text


def test_a_subset_report_is_never_compared_with_published_numbers(store, tmp_path):
    args = ["report", "--matrix", str(store.path), "--workdir", str(store.root / "work")]
    assert main(args + ["--out", str(tmp_path), "--subset-per-class", "5"]) == 0
    text = (tmp_path / "README.md").read_text()
    published = text[text.index("## Published numbers") :].split("\n## ")[0]
    assert "never compared with published numbers" in published
    assert "|" not in published
    row = table_row(text, "## Leaderboard: last-epoch", ["resnet56 (60.00)", "resnet20"])
    assert row[3] == "5.00 ± 0.00 (1)"


def test_unknown_matrix_exits_2_with_one_line(tmp_path, capsys):
    assert main(["report", "--matrix", "no_such_matrix", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_matrix" in err[0] and "smoke" in err[0]


@pytest.mark.parametrize("tracking", ["mlflow", "none"])
def test_empty_store_exits_2_with_one_line(tmp_path, capsys, tracking):
    args = ["report", "--matrix", "smoke", "--workdir", str(tmp_path), "--tracking", tracking]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs in" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_store_without_this_matrix_exits_2(store, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(MATRIX.replace("name: reptest", "name: other").replace("seeds: 3", "seeds: 1")
                     .replace("lr: 0.05", "lr: 0.1"))
    args = ["report", "--matrix", str(other), "--workdir", str(store.root / "work")]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished runs of matrix 'other'" in err[0]


def test_bulk_history_read_equals_the_per_run_calls(store):
    records = store.tracker.search()
    ids = [r.run_id for r in records]
    bulk = fetch_histories(store.tracker, ids, "test/top1")
    assert bulk == {rid: store.tracker.history(rid, "test/top1") for rid in ids}
    assert sum(len(h) for h in bulk.values()) == (25 + 1) * 3 + 1  # finished + subset; failed


def test_methods_are_ranked_by_their_mean_rank_over_the_pairs(store):
    """A: dkd > cakd > kd > ce; B: dkd > kd > cakd > ce; C has ce alone (its teacher failed), so
    it ranks nothing. Mean ranks: dkd 1, kd 2.5, cakd 2.5, ce 4."""
    text = (store.out / "README.md").read_text()
    heading = "Methods by mean rank over the pairs (last-epoch)"
    section = text[text.index(heading):].split("\n#")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    assert rows == [["dkd", "1.00", "2"], ["kd", "2.50", "2"], ["cakd", "2.50", "2"],
                    ["ce", "4.00", "2"]]
