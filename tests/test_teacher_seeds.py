"""`teacher.seeds`: one teacher per seed, each with its own students; reports pair runs by
(teacher seed, student seed), split the spread into a teacher and a student part, and say
whether a method's lead over the baseline holds under every teacher."""

from __future__ import annotations

import math

import pytest

from bench.errors import SpecError
from bench.report import write_report
from bench.report.stats import paired, variance_split
from bench.spec import build_matrix, load_matrix
from bench.store.trackers import JsonLinesTracker
from tests.test_report_units import log_finished

RAW = {
    "name": "tseeds",
    "data": {"dataset": "synthetic", "synthetic": {"classes": 10}},
    "recipe": {"epochs": 2, "milestones": [1]},
    "teacher": {"seeds": [0, 1, 2]},
    "pairs": [{"teacher": "resnet20", "student": "resnet8"},
              {"teacher": "resnet32", "student": "resnet8"}],
    "methods": ["ce", "kd", "dkd", {"name": "kd", "label": "kd_t8", "params": {"temperature": 8}}],
    "seeds": 3,
}
TEACHER_EFFECT = {0: -1.0, 1: 0.0, 2: 1.0}  # planted: the teacher's seed moves kd by ±1
STUDENT_EFFECT = {0: -0.1, 1: 0.0, 2: 0.1}
OVER_KD = {"kd": {0: 0.0, 1: 0.0, 2: 0.0}, "dkd": {0: 0.5, 1: 0.5, 2: -0.5},
           "kd_t8": {0: 0.5, 1: 0.5, 2: 0.5}}


def planted(run) -> dict:
    if run.teacher is None:
        value = 60.0 + STUDENT_EFFECT[run.seed]
    else:
        value = (70.0 + TEACHER_EFFECT[run.teacher.seed] + STUDENT_EFFECT[run.seed]
                 + OVER_KD[run.method.label][run.teacher.seed])
    return {"last_top1": value, "best_top1": value + 0.2}


def test_each_teacher_seed_is_a_teacher_of_its_own_with_its_students():
    matrix = build_matrix(RAW, "t", data_hash="h")
    assert sorted((t.arch, t.seed) for t in matrix.teachers) == [
        ("resnet20", 0), ("resnet20", 1), ("resnet20", 2),
        ("resnet32", 0), ("resnet32", 1), ("resnet32", 2)]
    students = [r for r in matrix.runs if r.teacher is not None]
    assert len(students) == 2 * 3 * 3 * 3 and len({r.cell_key for r in students}) == 54
    ce = [r for r in matrix.runs if r.teacher is None]
    assert len(ce) == 3 and all(r.pairs == ("resnet20:resnet8", "resnet32:resnet8") for r in ce)
    assert len({r.name for r in matrix.runs}) == len(matrix.runs)
    # the default (one teacher seed) keeps every key
    single = build_matrix(RAW | {"teacher": {}}, "t", data_hash="h")
    first = build_matrix(RAW | {"teacher": {"seeds": [0]}}, "t", data_hash="h")
    assert [r.cell_key for r in single.runs] == [r.cell_key for r in first.runs]


@pytest.mark.parametrize("teacher,match", [
    ({"seeds": [0, 0]}, "teacher.seeds: expected distinct seeds"),
    ({"seeds": [0, 1], "seed": 3}, "teacher.seed and teacher.seeds: give one of them"),
    ({"seeds": [0, 1], "source": "published"}, "a released or given teacher is one file"),
])
def test_bad_teacher_seeds_are_one_line(teacher, match):
    with pytest.raises(SpecError, match=match):
        build_matrix(RAW | {"teacher": teacher}, "t", data_hash="h")


def test_the_variance_split_finds_a_planted_teacher_effect():
    values = {(t, s): 70 + TEACHER_EFFECT[t] + STUDENT_EFFECT[s]
              for t in range(3) for s in range(3)}
    split = variance_split(values)
    assert split.student == pytest.approx(0.01, abs=1e-12)  # var(−0.1, 0, 0.1)
    assert split.teacher == pytest.approx(1.0 - 0.01 / 3, abs=1e-12)  # var(−1, 0, 1) − MS_w / 3
    no_teacher = {(t, s): 70 + STUDENT_EFFECT[s] * (t + 1) for t in range(3) for s in range(3)}
    assert variance_split(no_teacher).teacher == 0.0  # the means agree: floored at zero
    assert variance_split({(0, 0): 1.0, (1, 0): 2.0}) is None


def test_a_run_without_a_teacher_pairs_with_every_teacher_seed():
    kd = {(t, s): 70.0 + t for t in range(3) for s in range(2)}
    ce = {(None, s): 60.0 for s in range(2)}
    d = paired(kd, ce)
    assert d.n == 6 and d.mean == pytest.approx(11.0)
    assert paired({0: 1.0, 1: 2.0}, {1: 1.0, 2: 5.0}).seeds == (1,)


def test_the_report_splits_the_variance_and_says_where_a_lead_holds(tmp_path):
    matrix = build_matrix(RAW, "t", data_hash="h")
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, planted)
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    section = text[text.index("## Teacher seeds"):].split("\n## ")[0]
    rows = {tuple(r[:3]): r for r in _cells(section, "resnet20")}
    teacher_std, student_std = math.sqrt(1.0 - 0.01 / 3), 0.1
    assert rows[("resnet20", "resnet8", "kd")][3:6] == [
        "3 × 3", f"{teacher_std:.2f}", f"{student_std:.2f}"]
    dkd = rows[("resnet20", "resnet8", "dkd − kd")]
    assert dkd[3] == "t0: +0.50, t1: +0.50, t2: -0.50"
    assert dkd[5] == "depends on the teacher seed"
    assert rows[("resnet20", "resnet8", "kd_t8 − kd")][5] == "ahead under every teacher seed"
    # the leaderboard pools every (teacher, student) unit: 9 kd runs, 3 ce runs
    board = text[text.index("## Leaderboard"):].split("\n## ")[0]
    row = _cells(board, "resnet20")[0]
    labels = _cells(board, "teacher (top-1)")[0]
    assert row[labels.index("ce")] == "60.00 ± 0.10 (3)"
    assert row[labels.index("kd")].endswith("(9)")
    # Δ ce − kd pairs each ce run with the kd run of its student seed under every teacher
    delta = text[text.index("### Δ vs KD, last-epoch"):].split("\n#")[0]
    heads = _cells(delta, "teacher")[0]
    assert _cells(delta, "resnet20")[0][heads.index("ce − kd")].startswith("-10.00 [")
    per_seed = text[text.index("## Per seed"):].split("\n## ")[0]
    kd_rows = [r for r in _cells(per_seed, "resnet20") if r[2] == "kd"]
    assert [r[3] for r in kd_rows] == ["0", "1", "2"]
    assert [r[3] for r in _cells(per_seed, "resnet20") if r[2] == "ce"] == ["—"]


def _cells(text: str, first: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first):
            rows.append(cells)
    return rows


def test_cifar100_teacher_seeds_is_three_pairs_three_methods_three_by_three():
    matrix = load_matrix("cifar100_teacher_seeds", data_hash="h")
    assert len(matrix.pairs) == 3 and matrix.teacher_seeds == (0, 1, 2)
    assert list(matrix.method_labels) == ["kd", "dkd", "cakd"]
    students = [r for r in matrix.runs if r.teacher is not None]
    assert len(students) == 3 * 3 * 3 * 3 and len(matrix.teachers) == 9


def test_a_run_trains_one_teacher_per_seed_and_each_student_learns_from_its_own(tmp_path):
    from bench.__main__ import main
    from tests.runner_helpers import write_tiny

    matrix = write_tiny(tmp_path, methods="[kd]", seeds=1)
    matrix.write_text(matrix.read_text().replace(
        "teacher: {recipe: {epochs: 1}}", "teacher: {recipe: {epochs: 1}, seeds: [0, 1]}"
    ).replace("epochs: 3", "epochs: 1"))
    assert main(["run", "--matrix", str(matrix), "--workdir", str(tmp_path),
                 "--tracking", "none"]) == 0
    records = JsonLinesTracker(tmp_path).search()
    teachers = {r.params["seed"]: r for r in records if r.tags["role"] == "teacher"}
    students = {r.params["teacher.seed"]: r for r in records if r.tags["role"] == "student"}
    assert sorted(teachers) == sorted(students) == ["0", "1"]
    assert teachers["0"].tags["cell_key"] != teachers["1"].tags["cell_key"]
    shas = {seed: r.tags["teacher_sha256"] for seed, r in students.items()}
    assert shas["0"] != shas["1"]  # each student was taught by the teacher of its seed
    assert main(["run", "--matrix", str(matrix), "--workdir", str(tmp_path),
                 "--tracking", "none"]) == 0
    assert len(JsonLinesTracker(tmp_path).search()) == len(records)  # nothing trained twice
