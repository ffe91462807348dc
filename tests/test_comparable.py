"""One notion of "comparable": every kind of difference from a published setup is a reason, one
test per kind, and an unchanged published-setup spec is comparable; the report shows a Δ only
then, and says why not otherwise."""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics

import pytest
import scipy.stats
import yaml

from bench.references import Ours, PublishedTable, differences, load_published, load_setups
from bench.report import write_report
from bench.report.stats import summarize, welch_p
from bench.spec import build_matrix
from bench.spec.matrix import apply_overrides, read_matrix_yaml
from bench.store.trackers import JsonLinesTracker
from tests.test_report_units import log_finished

TABLE = PublishedTable(load_published())
SETUPS = load_setups()
PAIR = ("resnet32x4", "resnet8x4")
# five finished seeds, the released teacher re-scored within 0.15 of its paper
LIKE_FOR_LIKE = Ours(finished_runs=5, teacher_top1=79.40, published_teacher_top1=79.42)


def cell(matrix_name="cifar100_full", method="dkd", pair=PAIR, overrides=(), **options):
    raw = apply_overrides(copy.deepcopy(read_matrix_yaml(matrix_name)[0]), list(overrides))
    matrix = build_matrix(raw, "test", data_hash="abc", **options)
    return next(
        r
        for r in matrix.runs
        if r.method.name == method
        and r.student == pair[1]
        and (r.teacher is None or r.teacher.arch == pair[0])
    )


def reasons(run, ours=LIKE_FOR_LIKE, row=None):
    teacher = run.teacher.arch if run.teacher else PAIR[0]
    row = row or TABLE.find(run.data.dataset, teacher, run.student, run.method.name)
    return differences(run, row, SETUPS[row.setup], ours)


@pytest.mark.parametrize(
    "method,pair",
    [("dkd", PAIR), ("kd", PAIR), ("ce", PAIR), ("dkd", ("wrn_40_2", "ShuffleV1")),
     ("kd", ("vgg13", "MobileNetV2"))],
)
def test_the_shipped_published_setup_is_comparable(method, pair):
    assert reasons(cell(method=method, pair=pair)) == []


MDISTILLER_IMAGENET_BATCH = (
    "per-device batch 512 (BatchNorm) against an unknown published one (setup imagenet_mdistiller)"
)


def test_imagenet_full_differs_on_the_torch_backend_only_in_the_unknown_per_device_batch():
    """mdistiller's ImageNet runs used nn.DataParallel at batch 512 on a number of GPUs no source
    states: BatchNorm saw 512 / GPUs images, which kdbench cannot match."""
    ours = Ours(finished_runs=3, teacher_top1=73.30, published_teacher_top1=73.31)
    for method, pair in [("dkd", ("torchvision:resnet34", "torchvision:resnet18")),
                         ("kd", ("torchvision:resnet50", "imagenet:mobilenetv1"))]:
        assert reasons(cell("imagenet_full", method, pair), ours) == [MDISTILLER_IMAGENET_BATCH]


def test_a_per_device_batch_that_differs_from_the_published_one():
    two_ranks = cell().execution.__class__(world_size=2)
    run = dataclasses.replace(cell(), execution=two_ranks)
    assert reasons(run) == ["per-device batch 32 ≠ 64 (BatchNorm statistics)"]
    synced = cell(overrides=["recipe.sync_bn=true"])  # statistics over the global batch
    assert reasons(dataclasses.replace(synced, execution=two_ranks)) == []


def test_a_recipe_field():
    assert reasons(cell(overrides=["recipe.epochs=2"])) == ["epochs 2 ≠ 240"]
    assert reasons(cell(overrides=["recipe.milestones=[100]"])) == [
        "milestones [100] ≠ [150, 180, 210]"
    ]


def test_a_method_parameter():
    changed = cell(overrides=["method_params.dkd.temperature=2"])
    assert reasons(changed) == ["dkd.temperature 2 ≠ 4"]
    # the per-pair value of the published row (DKD β = 8 for resnet32x4 -> resnet8x4)
    other_beta = cell(overrides=["pairs=[{teacher: resnet32x4, student: resnet8x4}]"])
    assert other_beta.method.params["beta"] == 8.0  # the method default: equal, comparable
    beta2 = cell(
        overrides=["pairs=[{teacher: resnet32x4, student: resnet8x4, params: {dkd: {beta: 2}}}]"]
    )
    assert reasons(beta2) == ["dkd.beta 2 ≠ 8"]


def test_precision():
    assert reasons(cell(precision="bf16")) == ["precision bf16 ≠ fp32"]
    assert reasons(cell(precision="tf32", device="cuda")) == ["precision tf32 ≠ fp32"]


def test_the_teacher_logit_cache():
    assert reasons(cell(teacher_cache="float16")) == [
        "teacher logits cached in float16 ≠ computed each step"
    ]


def test_the_teacher_source():
    trained = cell(overrides=["teacher.source=trained"])
    ours = dataclasses.replace(LIKE_FOR_LIKE, teacher_top1=78.91)
    assert reasons(trained, ours) == ["teacher self-trained (re-scored 78.91, published 79.42)"]
    assert reasons(cell("cifar100_full_selftrained"), ours) == [
        "teacher self-trained (re-scored 78.91, published 79.42)"
    ]


def test_the_number_of_seeds():
    assert reasons(cell(), Ours(1, 79.4, 79.42)) == [
        "seeds: 1 finished run; a mean needs at least 2"
    ]
    # DKD's CIFAR numbers are means of 5 runs; CRD's KD rows do not say how many
    assert reasons(cell(), Ours(3, 79.4, 79.42)) == [
        "seeds: 3 finished runs < the published mean of 5"
    ]
    assert reasons(cell(method="kd"), Ours(3, 79.4, 79.42)) == []


def test_a_data_subset():
    assert reasons(cell(overrides=["data.subset_per_class=10"])) == [
        "data subset (subset_per_class=10)"
    ]
    assert reasons(cell(overrides=["data.augment=false"])) == ["augmentation off ≠ on"]


def test_a_backend_that_changes_pixels():
    ours = Ours(finished_runs=3, teacher_top1=73.30, published_teacher_top1=73.31)
    pair = ("torchvision:resnet34", "torchvision:resnet18")
    ffcv = cell("imagenet_full", "dkd", pair, overrides=["data.backend=ffcv"])
    assert reasons(ffcv, ours) == [
        "pixels ffcv-jpeg-r512-q90-opencv (backend ffcv) ≠ torchvision-pil",
        MDISTILLER_IMAGENET_BATCH,
    ]
    # the CIFAR backends give the same batches (tested in test_data_backends): no difference
    assert reasons(cell(overrides=["data.backend=gpu"])) == []


def test_the_metric():
    ours = Ours(finished_runs=3, teacher_top1=73.30, published_teacher_top1=73.31)
    pair = ("torchvision:resnet34", "torchvision:resnet18")
    ce = cell("imagenet_full", "ce", pair)  # LS Table 3 does not say which epoch
    assert reasons(ce, ours, TABLE.find("imagenet", *pair, "ce")) == [
        "metric unknown: the source does not say which epoch it reports"
    ]


def test_what_kdbench_cannot_reproduce_is_always_a_reason():
    row = TABLE.find("cifar100", *PAIR, "mlkd")
    setup = SETUPS[row.setup]
    run = cell("cifar100_methods", method="mlkd")
    found = differences(run, row, setup, LIKE_FOR_LIKE)
    assert found[0].startswith("strong view: the authors' RandAugment(2) + Cutout through PIL")
    assert found[1].startswith("confidence masks per GPU shard")
    # the authors' configs for this pair, with the 480 epochs the paper's numbers were made with
    assert found[2:] == ["epochs 240 ≠ 480", "lr 0.05 ≠ 0.025",
                         "per-device batch 64 (BatchNorm) against an unknown published one "
                         "(setup mlkd_cifar100)"]
    ours = cell("cifar100_methods", method="mlkd", overrides=["recipe.lr=0.025",
                                                              "recipe.epochs=480"])
    assert len(differences(ours, row, setup, LIKE_FOR_LIKE)) == 3


def test_welch_p_is_welchs_t_test():
    ours = summarize([76.1, 76.5, 75.9, 76.8, 76.3])
    expected = scipy.stats.ttest_ind_from_stats(
        ours.mean, ours.std, ours.n, 76.32, 0.2, 5, equal_var=False
    ).pvalue
    assert math.isclose(welch_p(ours, 76.32, 0.2, 5), expected, rel_tol=1e-12)
    assert welch_p(summarize([76.0]), 76.32, 0.2, 5) is None


# ------------------------------------------------------------------ the report


def _report(tmp_path, last_of, methods=None, **options) -> str:
    raw = copy.deepcopy(read_matrix_yaml("cifar100_full")[0])
    raw["pairs"] = [p for p in raw["pairs"] if (p["teacher"], p["student"]) == PAIR]
    raw["methods"] = methods or raw["methods"]
    raw["name"] = "c100pair"
    matrix = build_matrix(raw, "t", data_hash="abc", **options)
    tracker = JsonLinesTracker(tmp_path)

    def metrics(run):
        value = last_of(run)
        return {"last_top1": value, "best_top1": value + 0.3, "teacher_top1": 79.40}

    log_finished(tracker, matrix, metrics)
    path = tmp_path / "c100pair.yaml"
    path.write_text(yaml.safe_dump(raw))
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    return text[text.index("## Published numbers") :].split("\n## ")[0]


def _row(section: str, method: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:3] == [*PAIR, method]:
            return cells
    raise AssertionError(f"no row for {method}")


DKD_LAST = [75.9, 76.2, 76.0, 76.4, 76.1]


def test_the_report_diffs_like_for_like_and_names_each_difference(tmp_path):
    section = _report(tmp_path, lambda run: DKD_LAST[run.seed] if run.method.name == "dkd"
                      else 73.0 + run.seed * 0.1)
    dkd = _row(section, "dkd")
    best = [v + 0.3 for v in DKD_LAST]
    assert dkd[7] == f"{statistics.fmean(best) - 76.32:+.2f} (ours best − published)"
    ci = summarize(best).ci
    inside = "inside" if ci[0] <= 76.32 <= ci[1] else "outside"
    assert dkd[8] == f"{inside} our 95% CI; published spread unknown"
    assert "(mean of 5)" in dkd[6] and "best test top-1 over the 240 epochs" in dkd[6]
    cakd = _row(section, "cakd")
    assert cakd[5] == "not published"
    teacher = _row(section, "teacher")
    assert teacher[7] == f"{79.40 - 79.42:+.2f}"


def test_a_bf16_report_is_not_comparable_and_says_why(tmp_path):
    section = _report(tmp_path, lambda run: 76.0 + run.seed * 0.1, precision="bf16")
    assert _row(section, "dkd")[7] == "not comparable: precision bf16 ≠ fp32"
    assert _row(section, "kd")[7] == "not comparable: precision bf16 ≠ fp32"


def test_a_parameter_the_setup_leaves_at_its_default_and_hand_set_data_statistics():
    ls = cell(method="kd", overrides=["method_params.kd.standardize=true"])
    assert reasons(ls) == ["kd.standardize true ≠ the published default false"]
    assert reasons(cell(overrides=["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.2, 0.2, 0.2]"])) == [
        "normalization mean/std set by hand ≠ the dataset's"
    ]


def test_cifar10_full_matches_its_paper_but_for_what_kdbench_cannot_reproduce():
    ours = Ours(finished_runs=5, teacher_top1=None, published_teacher_top1=None)
    for pair in [("ResNet34", "ResNet18"), ("ResNet50", "ResNet18"), ("ResNet50", "ResNet34"),
                 ("ResNet101", "ResNet34")]:
        for method in ("ce", "kd"):
            row = TABLE.find("cifar10", *pair, method)
            found = reasons(cell("cifar10_full", method, pair), ours, row)
            assert found == [
                "which 5k images are held out: the authors' random choice (kdbench: a hash of "
                "the image index)",
                "alpha and T chosen per pair on that validation split",
                "metric: the test top-1 at the best epoch on a validation split held out of "
                "train; this cell holds out none (set data.val_per_class)",
            ], (pair, method)
            held_out = cell("cifar10_full", method, pair, ["data.val_per_class=500"])
            assert reasons(held_out, ours, row) == found[:2]  # their 45k / 5k split
            other = cell("cifar10_full", method, pair, ["data.val_per_class=50"])
            assert reasons(other, ours, row)[2:] == ["validation split: 50 images per class ≠ 500"]
    # the cosine floor and the per-pair KD parameters are part of the comparison
    kd = cell("cifar10_full", "kd", ("ResNet50", "ResNet18"), ["recipe.lr_min=0"])
    assert "lr_min 0 ≠ 0.0001" in reasons(kd, ours)
    method = dataclasses.replace(kd.method, params=kd.method.params | {"temperature": 2})
    assert "kd.temperature 2 ≠ 4" in reasons(dataclasses.replace(kd, method=method), ours)


def test_tinyimagenet_full_finds_the_published_dot_rows_and_says_why_they_differ():
    ours = Ours(finished_runs=5, teacher_top1=None, published_teacher_top1=None)
    for student in ("mobilenetv2_tinyimagenet", "ShuffleV2"):
        for method in ("kd", "kd_dot"):
            found = reasons(cell("tinyimagenet_full", method, ("ResNet18", student)), ours)
            assert found[0] == "augmentation RandomRotation(20) + flip (kdbench: pad-crop-flip)"
            assert found[1] == ("per-device batch 256 (BatchNorm) against an unknown "
                                "published one (setup dot_tinyimagenet)")
            assert found[2].startswith("teacher self-trained"), found
            assert len(found) == 3, found


def test_nkd_imagenet_rows_are_found_and_say_what_differs():
    from bench.spec import MethodSpec

    ours = Ours(finished_runs=3, teacher_top1=73.30, published_teacher_top1=73.31)
    pair = ("torchvision:resnet34", "torchvision:resnet18")
    kd = cell("imagenet_full", "kd", pair)
    nkd = dataclasses.replace(kd, method=MethodSpec("nkd", "nkd", {"temperature": 1.0,
                                                                   "gamma": 1.5, "w_ce": 1.0}))
    row = TABLE.find("imagenet", *pair, "nkd")
    assert row.top1 == 71.96
    assert reasons(nkd, ours, row) == [
        "teachers: OpenMMLab's mmcls checkpoints (resnet34_8xb32_in1k, resnet50_8xb32_in1k), not "
        "torchvision's",
        "data pipeline: mmcls's (kdbench: torchvision's PIL pipeline)",
        "batch_size 512 ≠ 256",  # imagenet_full keeps mdistiller's recipe
        "lr 0.2 ≠ 0.1",
        "per-device batch 512 ≠ 32 (BatchNorm statistics)",  # mmcls: 8 GPUs x 32
        "metric unknown: the source does not say which epoch it reports",
    ]


def test_published_rows_are_found_by_method_identity_never_by_label(tmp_path):
    methods = [{"name": "ce", "label": "kd"}, {"name": "kd", "label": "hinton"},
               {"name": "kd", "label": "kd_std", "params": {"standardize": True}},
               {"name": "dkd"}, {"name": "cakd"}]
    section = _report(tmp_path, lambda run: 73.0 + run.seed * 0.1, methods=methods)
    ce_labelled_kd = _row(section, "kd")
    assert ce_labelled_kd[5] == "72.50"  # CRD's student alone, not KD's 73.33
    assert _row(section, "hinton")[5] == "73.33"
    assert _row(section, "kd_std")[5] == "76.62"  # the LS paper's KD + LS: kd, standardize on
    assert "kd 73.33" not in section.split("for context")[-1]  # each shown row is not context
    assert "kd+ls 76.62" not in section.split("for context")[-1]
    assert "crd 75.51" in section.split("for context")[-1]


def test_a_validation_split_is_a_difference_from_a_number_trained_on_the_whole_split():
    assert reasons(cell(overrides=["data.val_per_class=50"])) == [
        "train split: 50 images per class held out for validation ≠ none"
    ]
