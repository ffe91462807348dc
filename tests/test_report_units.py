"""The report's parts on their own: t values, paired intervals, leads, published-name matching and
the like-for-like rules, and the CAKD ablation table (through a JSON-lines store)."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from bench.errors import SpecError
from bench.references import PublishedTable, load_published, not_compared_reason
from bench.report import write_report
from bench.report.stats import fmt_paired, lead, paired, summarize, t_critical
from bench.spec import DataSpec, build_matrix
from bench.store.schema import run_tags
from bench.store.trackers import FINISHED, JsonLinesTracker

# t_{0.975, df} from statistical tables, beyond the hard-coded 1..30
T_BEYOND = {31: 2.0395, 40: 2.0211, 60: 2.0003, 120: 1.9799, 1000: 1.9623}


def test_t_critical_values():
    for df, expected in {1: 12.7062, 2: 4.3027, 30: 2.0423}.items():
        assert t_critical(df) == pytest.approx(expected, abs=5e-5)
    for df, expected in T_BEYOND.items():
        assert t_critical(df) == pytest.approx(expected, abs=2e-4)
    values = [t_critical(df) for df in range(1, 200)]
    assert values == sorted(values, reverse=True)
    with pytest.raises(ValueError):
        t_critical(0)


def test_paired_difference_uses_common_seeds_only():
    a = {0: 71.0, 1: 72.0, 2: 71.5, 3: 90.0}
    b = {0: 70.0, 1: 70.5, 2: 70.9}
    p = paired(a, b)
    d = [1.0, 1.5, 0.6]
    m = sum(d) / 3
    s = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    assert p.seeds == (0, 1, 2) and p.n == 3
    assert p.mean == pytest.approx(m) and p.std == pytest.approx(s)
    low, high = p.ci
    t2 = 4.302652729749464  # t(0.975, df 2), to full precision
    assert low == pytest.approx(m - t2 * s / math.sqrt(3))
    assert high == pytest.approx(m + t2 * s / math.sqrt(3))
    assert p.clearly_positive == (low > 0)
    one = paired({0: 2.0}, {0: 1.0})
    assert one.ci is None and not one.clearly_positive
    assert fmt_paired(one) == "+1.00 (1, no interval)"
    assert fmt_paired(paired({0: 1.0}, {1: 1.0})) == "—"


def test_summary_is_sample_std():
    s = summarize([1.0, 2.0, 4.0])
    assert s.std == pytest.approx(
        math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    )
    assert summarize([3.0]).std == 0.0 and summarize([]).n == 0


def test_lead_needs_a_clear_interval():
    clear = lead({"kd": {0: 70.0, 1: 70.2, 2: 70.1}, "dkd": {0: 71.0, 1: 71.3, 2: 71.1}})
    assert clear.best == "dkd" and clear.runner_up == "kd" and clear.clear
    noisy = lead({"kd": {0: 70.0, 1: 71.0, 2: 70.0}, "dkd": {0: 72.0, 1: 69.0, 2: 71.0}})
    assert noisy.best == "dkd" and not noisy.clear
    tie = lead({"kd": {0: 70.0, 1: 71.0}, "dkd": {0: 71.0, 1: 70.0}})
    assert not tie.clear and tie.difference is None
    alone = lead({"kd": {0: 70.0}, "dkd": {}})
    assert alone.best == "kd" and alone.runner_up is None and not alone.clear
    assert lead({"kd": {}}) is None


def test_published_rows_match_by_name_and_carry_their_setup():
    table = PublishedTable(load_published())
    kd = table.find("cifar100", "resnet56", "resnet20", "kd")
    assert (kd.top1, kd.metric, kd.setup, kd.runs) == (70.66, "last", "crd_cifar100", None)
    assert table.find("cifar100", "ResNet50", "MobileNetV2", "dkd").params == {"beta": 8}
    assert table.find("cifar100", "resnet56", "resnet20", "cakd") is None
    assert table.find("cifar100", "resnet56", "resnet20", "mlkd").setup == "mlkd_cifar100"
    assert table.find("cifar100", "resnet32x4", "resnet8x4", "wkd_l").metric == "unknown"
    # ImageNet: prefixed kdbench names against the papers' spelling; DKD averages 3 trials there
    r18 = table.find("imagenet", "torchvision:resnet34", "torchvision:resnet18", "kd")
    assert (r18.top1, r18.top5, r18.metric, r18.runs) == (71.03, 90.05, "best", 3)
    dkd = table.find("imagenet", "torchvision:resnet34", "torchvision:resnet18", "dkd")
    assert (dkd.runs, dkd.params) == (3, {"beta": 0.5})
    mbv1 = table.find("imagenet", "torchvision:resnet50", "imagenet:mobilenetv1", "teacher")
    assert (mbv1.top1, mbv1.metric) == (76.13, "pretrained") and "torchvision" in mbv1.source
    assert table.teacher_top1("cifar100", "wrn_40_2").top1 == 75.61


def test_every_published_row_names_a_recorded_setup_and_a_source():
    from bench.references import load_setups

    setups = load_setups()
    for row in load_published():
        assert row.setup in setups, row
        assert row.source, row
        assert row.metric in ("best", "last", "best_val", "pretrained", "unknown"), row


def test_subsets_and_generated_data_are_never_compared():
    assert not_compared_reason(DataSpec(dataset="cifar100")) == ""
    assert "subset" in not_compared_reason(DataSpec(dataset="cifar100", subset_per_class=50))
    assert "subset" in not_compared_reason(DataSpec(dataset="cifar100", test_subset_per_class=5))
    assert "generated" in not_compared_reason(DataSpec(dataset="synthetic"))


ABLATION = {
    "name": "abl",
    "data": {"dataset": "synthetic", "synthetic": {"classes": 10}},
    "recipe": {"epochs": 2, "milestones": [1]},
    "pairs": [{"teacher": "resnet20", "student": "resnet8"}],
    "methods": [
        "kd",
        {"name": "cakd", "label": "cakd_bcd_scd_wcd"},
        {"name": "cakd", "label": "cakd_bcd", "params": {"scd": False, "wcd": False}},
        {"name": "cakd", "label": "cakd_k{k}", "grid": {"k": [0]}},
    ],
    "seeds": 3,
}
LAST = {
    "kd": [60.0, 61.0, 60.5],
    "cakd_bcd_scd_wcd": [62.0, 62.4, 61.9],
    "cakd_bcd": [61.0, 61.1, 60.2],
    "cakd_k0": [59.0, 62.0, 60.0],
}


def _delta(a, b):
    d = [x - y for x, y in zip(a, b, strict=True)]
    m = sum(d) / len(d)
    half = 4.3027 * math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1)) / math.sqrt(len(d))
    return f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] ({len(d)})"


def log_finished(tracker, matrix, metrics_of) -> None:
    """Log each run of `matrix` as a finished student run with `metrics_of(run)` at step 2."""
    for run in matrix.runs:
        teacher = SimpleNamespace(arch=run.teacher.arch, sha256="0" * 64) if run.teacher else None
        run_id = tracker.start(run.name, run.flat_params(), run_tags(run, "student", teacher))
        tracker.log_metrics(run_id, metrics_of(run), step=2)
        tracker.finish(run_id, FINISHED)


def test_ablation_table_against_the_full_cakd_cell_and_kd(tmp_path):
    matrix = build_matrix(ABLATION, "test", data_hash="abc")
    tracker = JsonLinesTracker(tmp_path)
    for run in matrix.runs:
        teacher = SimpleNamespace(arch=run.teacher.arch, sha256="0" * 64) if run.teacher else None
        run_id = tracker.start(run.name, run.flat_params(), run_tags(run, "student", teacher))
        last = LAST[run.method.label][run.seed]
        tracker.log_metrics(run_id, {"test/top1": last - 1}, step=1)
        tracker.log_metrics(run_id, {"test/top1": last}, step=2)
        final = {"last_top1": last, "best_top1": last, "last_top5": 90, "best_top5": 90}
        tracker.log_metrics(run_id, final | {"best_epoch": 2}, step=2)
        tracker.finish(run_id, FINISHED)
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    section = text[text.index("## CAKD ablation") :].split("\n## ")[0]
    rows = {
        cells[2]: cells
        for line in section.splitlines()
        if line.startswith("| resnet20")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }
    assert list(rows) == ["cakd_bcd_scd_wcd (full)", "cakd_bcd", "cakd_k0"]
    full = rows["cakd_bcd_scd_wcd (full)"]
    assert full[3] == "bcd+scd+wcd" and full[5] == "—"
    assert full[6] == _delta(LAST["cakd_bcd_scd_wcd"], LAST["kd"])
    assert rows["cakd_bcd"][3] == "bcd"
    assert rows["cakd_bcd"][5] == _delta(LAST["cakd_bcd"], LAST["cakd_bcd_scd_wcd"])
    assert rows["cakd_bcd"][6] == _delta(LAST["cakd_bcd"], LAST["kd"])
    assert rows["cakd_k0"][3] == "bcd+scd+wcd; k=0"
    assert rows["cakd_k0"][5] == _delta(LAST["cakd_k0"], LAST["cakd_bcd_scd_wcd"])
    published = text[text.index("## Published numbers") :].split("\n## ")[0]
    assert "never compared with published numbers" in published and "|" not in published
    assert len(list((tmp_path / "out" / "plots").glob("*.png"))) == 2


def test_no_ablation_table_without_cakd_variants(tmp_path):
    raw = dict(ABLATION, methods=["kd", "cakd"], seeds=1)
    matrix = build_matrix(raw, "test", data_hash="abc")
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, lambda run: {"last_top1": 50.0, "best_top1": 51.0})
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "## CAKD ablation" not in text
    assert "50.00 ± 0.00 (1)" in text


def test_the_baseline_comes_from_the_matrix(tmp_path):
    matrix = build_matrix(dict(ABLATION, baseline="cakd_bcd"), "test", data_hash="abc")
    assert matrix.baseline == "cakd_bcd"
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, lambda run: dict.fromkeys(
        ("last_top1", "best_top1"), LAST[run.method.label][run.seed]))
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    section = text[text.index("## Δ vs CAKD_BCD, paired by seed") :].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| resnet20"))
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    assert cells[2] == _delta(LAST["kd"], LAST["cakd_bcd"])  # kd − cakd_bcd
    assert "kd − cakd_bcd" in section
    assert "Δ vs cakd_bcd" in text[text.index("## CAKD ablation") :]


def test_report_knows_no_method_by_name():
    """Δ and the ablation take their methods from the matrix and the runs' parameters."""
    import bench.report

    root = Path(bench.report.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for name in ('"kd"', '"cakd"', '"bcd"', '"scd"', '"wcd"', "'kd'"):
            assert name not in text, f"{path.name} names {name}"


def test_reports_name_cakd_as_kdbenchs_reading_of_the_paper(tmp_path, capsys):
    from bench.__main__ import main

    matrix = build_matrix(dict(ABLATION, seeds=1), "test", data_hash="abc")
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, lambda run: {"last_top1": 50.0, "best_top1": 51.0})
    write_report(matrix, tracker, tmp_path / "out")
    protocol = (tmp_path / "out" / "README.md").read_text().split("## Leaderboard")[0]
    row = next(line for line in protocol.splitlines() if line.startswith("| cakd_bcd "))
    assert "kdbench's reading of CAKD (arXiv 2410.14741)" in row
    assert "publishes" in protocol or "gives neither" in protocol
    assert "KD (Hinton et al. 2015" in protocol

    assert main(["list", "methods"]) == 0
    listing = capsys.readouterr().out
    assert "cakd: kdbench's reading of CAKD (arXiv 2410.14741)" in listing
    assert "no published number is compared with it" in listing


def test_runs_of_other_precision_or_cache_are_never_pooled(tmp_path):
    from bench.report import load_report_matrix

    raw = dict(ABLATION, methods=["kd"], seeds=2)
    tracker = JsonLinesTracker(tmp_path)
    values = {("fp32", "none"): [60.0, 62.0], ("bf16", "none"): [70.0, 71.0],
              ("fp32", "float16"): [80.0, 81.0]}
    for (precision, cache), by_seed in values.items():
        matrix = build_matrix(raw, "t", data_hash="abc", precision=precision, teacher_cache=cache)
        log_finished(tracker, matrix, lambda run, by_seed=by_seed: dict.fromkeys(
            ("last_top1", "best_top1"), by_seed[run.seed]))
    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump(raw))
    records = tracker.search()

    def reported(**numerics) -> str:
        matrix = load_report_matrix(str(path), records, store="s", **numerics)
        out = tmp_path / "-".join(numerics.values() or ["default"])
        write_report(matrix, tracker, out)
        return (out / "README.md").read_text()

    fp32 = reported(precision="fp32", teacher_cache="none")
    assert "61.00 ± 1.41 (2)" in fp32 and "70.50" not in fp32 and "80.50" not in fp32
    assert "precision bf16, teacher_cache none" in fp32 and "--precision bf16" in fp32
    assert "precision fp32, teacher_cache float16" in fp32
    assert "70.50 ± 0.71 (2)" in reported(precision="bf16", teacher_cache="none")
    assert "80.50 ± 0.71 (2)" in reported(precision="fp32", teacher_cache="float16")
    with pytest.raises(SpecError, match="no runs of matrix 'abl' made with precision bf16, "
                       "teacher_cache float16.*it holds runs made with precision bf16"):
        reported(precision="bf16", teacher_cache="float16")


def test_a_published_row_with_an_unknown_metric_is_one_line_naming_it(tmp_path, monkeypatch):
    from bench.errors import SpecError
    from bench.references import load_published

    header = "dataset,teacher,student,method,top1,top5,metric,runs,std,setup,params,source\n"
    (tmp_path / "published.csv").write_text(
        header + "cifar100,resnet56,resnet20,kd,70.0,,final,,,crd_cifar100,,a lab's table\n"
    )
    monkeypatch.setenv("KDBENCH_REFERENCES", str(tmp_path))
    with pytest.raises(SpecError, match="published.csv line 2: not a valid published row "
                       r"\(metric 'final', expected one of last, best, best_val"):
        load_published()
