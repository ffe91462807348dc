"""`python -m bench leaderboard` over a store of generated runs with planted effects (10 pairs x
5 methods x 3 seeds: dkd ahead of kd by 1.0 on every block with seed noise 0.3, kd and cakd
equal), checked for its numbers and in a real browser (Debian's Chromium, selenium)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from bench.__main__ import main
from bench.spec import build_matrix
from bench.store.trackers import JsonLinesTracker
from tests import browser
from tests.test_report_units import log_finished

pytestmark = pytest.mark.slow

PAIRS = [("resnet20", "resnet8"), ("resnet32", "resnet8"), ("resnet56", "resnet20"),
         ("resnet110", "resnet20"), ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"),
         ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("vgg13", "vgg8"),
         ("resnet32x4", "ShuffleV1")]
OFFSETS = {"ce": -3.0, "kd": 0.0, "cakd": 0.0, "kd_t2": 0.3, "dkd": 1.0}
RAW = {
    "name": "planted",
    "data": {"dataset": "synthetic", "synthetic": {"classes": 10}},
    "recipe": {"epochs": 2, "milestones": [1]},
    "pairs": [{"teacher": t, "student": s} for t, s in PAIRS],
    "methods": ["ce", "kd", "dkd", "cakd", {"name": "kd", "label": "kd_t2",
                                            "params": {"temperature": 2}}],
    "seeds": 3,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leaderboard")
    matrix = build_matrix(RAW, "planted", data_hash="abc")
    rng = np.random.default_rng(11)
    level = {pair: 70 + rng.normal(0, 2) for pair in PAIRS}
    noise = {run.run_key: rng.normal(0, 0.3) for run in matrix.runs}

    def metrics(run):
        pair = tuple(run.pairs[0].split(":"))
        value = level[pair] + OFFSETS[run.method.label] + noise[run.run_key]
        speed = 1000.0 / (2.0 if run.method.name == "dkd" else 1.0)
        return {"last_top1": value, "best_top1": value + 0.2, "img_per_s": speed}

    tracker = JsonLinesTracker(folder)
    log_finished(tracker, matrix, metrics)
    path = folder / "planted.yaml"
    path.write_text(yaml.safe_dump(RAW))
    out = folder / "site"
    assert main(["leaderboard", "--matrix", str(path), "--workdir", str(folder), "--tracking",
                 "none", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def driver():
    chromium = browser.start_chromium()
    yield chromium
    chromium.quit()


def test_the_planted_ranking_and_tests(site):
    board = json.loads((site / "leaderboard.json").read_text())
    ranking = next(r for r in board["rankings"] if r["filter"] == "all")
    order = [m["label"] for m in ranking["methods"]]
    assert order[0] == "dkd" and order[-1] == "ce" and order[1] == "kd_t2"
    dkd = ranking["methods"][0]
    assert 0.6 < dkd["vs_baseline"]["iqm"] < 1.4 and dkd["vs_baseline"]["low"] > 0
    assert dkd["wins"] + dkd["ties"] == 10 and dkd["losses"] == 0 and dkd["wins"] > 0
    assert dkd["time_per_image_vs_baseline"] == pytest.approx(2.0)
    assert ranking["friedman"]["p"] < 0.05
    p = {frozenset((x["a"], x["b"])): x["p"] for x in ranking["wilcoxon_holm"]}
    assert p[frozenset(("dkd", "kd"))] < 0.05  # the planted lead: found
    assert p[frozenset(("kd", "cakd"))] > 0.05  # the planted tie: not
    told_apart = ranking["verdict"].split("Holm's correction: ")[1].rstrip(".").split(", ")
    assert "dkd vs kd" in told_apart and "cakd vs kd" not in told_apart
    assert len(board["blocks"]) == 10 and board["blocks"][0]["page"].startswith("pairs/")
    # the pair families of the DKD table: one different-architecture pair
    assert {r["filter"] for r in board["rankings"]} == {
        "all", "same architecture", "different architecture"}
    pairs_csv = (site / "csv" / "pairs-all.csv").read_text().splitlines()
    dkd_kd = next(line for line in pairs_csv if line.startswith("dkd,kd,"))
    assert float(dkd_kd.split(",")[2]) < 0.05 and float(dkd_kd.split(",")[3]) > 0.9
    import html

    import methods

    page = (site / "methods" / "dkd.html").read_text()
    assert html.escape(methods.provenance("dkd"), quote=True) in page  # paper and formula
    assert "Time per training image relative to kd: 2.00×" in page
    csv = (site / "csv" / "ranking-all.csv").read_text().splitlines()
    assert csv[0].startswith("#,method,mean rank") and csv[1].split(",")[1] == "dkd"


def test_in_chromium_the_site_has_no_console_error_sorts_links_and_shows_its_figures(
    site, driver, tmp_path
):
    index = site / "index.html"
    assert browser.console_errors(driver, index) == []
    assert browser.sort_problems(driver, index, "ranking-all", "mean rank") == []
    assert browser.dead_links(driver, index) == []
    assert browser.image_problems(driver, index) == []
    assert len(driver.find_elements("tag name", "img")) >= 3
    driver.save_screenshot(str(site / "screenshot.png"))
    assert (site / "screenshot.png").stat().st_size > 10_000

    # the same checks fail on a broken copy: a mis-sorting script, a dead link, a missing plot
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    page = broken / "index.html"
    page.write_text(page.read_text().replace("return descending ? -c : c;", "return 0;"))
    assert browser.sort_problems(driver, page, "ranking-all", "mean rank") != []
    (broken / "methods" / "cakd.html").unlink()
    assert any("cakd.html" in d for d in browser.dead_links(driver, page))
    next((broken / "figures").glob("cd-all.svg")).unlink()
    assert browser.image_problems(driver, page) == ["figures/cd-all.svg"]
