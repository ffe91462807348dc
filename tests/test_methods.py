"""methods/: registry, parameter validation, the output contract, warm-up and switches."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import methods
from methods import MethodError, warmup_factor
from methods.registry import _METHODS

C = 10


def draw(seed: int, batch: int = 8, classes: int = C, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=gen, dtype=dtype) * 3
    teacher = torch.randn(batch, classes, generator=gen, dtype=dtype) * 3
    target = torch.randint(0, classes, (batch,), generator=gen)
    return student, teacher, target


def error_of(name: str, num_classes: int | None = None, **params) -> str:
    with pytest.raises(MethodError) as info:
        methods.create(name, num_classes=num_classes, **params)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- registry and parameters ----------------------------------------------------------------


def test_available_lists_the_shipped_methods():
    assert methods.available() == [
        "cakd", "ce", "dkd", "kd", "kd_dot", "mlkd", "nkd", "ttm", "wkd_l", "wttm"
    ]


def test_unknown_method_names_the_valid_ones():
    message = error_of("dkdd")
    assert "'dkdd'" in message
    for name in methods.available():
        assert name in message


@pytest.mark.parametrize(
    "name, valid",
    [
        ("kd", ["temperature", "w_ce", "w_kd"]),
        ("dkd", ["temperature", "w_ce", "alpha", "beta", "warmup"]),
        (
            "cakd",
            [
                "temperature",
                "warmup",
                "w_ce",
                "w_kd",
                "k",
                "w_bcd",
                "w_scd",
                "w_wcd",
                "bcd",
                "scd",
                "wcd",
                "weights",
            ],
        ),
        ("ce", ["none"]),
    ],
)
def test_unknown_parameter_names_the_valid_parameters(name, valid):
    message = error_of(name, tau=2.0)
    assert "'tau'" in message
    added = ["standardize"] if name in ("kd", "dkd", "cakd") else []  # an added option
    assert message.endswith("valid: " + ", ".join(valid + added))
    if name != "ce":
        assert list(methods.resolve_params(name)) == valid  # added options at their default


def test_defaults_are_the_cifar_defaults_of_methods_md():
    assert methods.resolve_params("ce") == {}
    assert methods.resolve_params("kd") == {"temperature": 4.0, "w_ce": 0.1, "w_kd": 0.9}
    assert methods.resolve_params("dkd") == {
        "temperature": 4.0,
        "w_ce": 1.0,
        "alpha": 1.0,
        "beta": 8.0,
        "warmup": 20,
    }
    assert methods.resolve_params("cakd") == {
        "temperature": 4.0,
        "warmup": 20,
        "w_ce": 1.0,
        "w_kd": 1.0,
        "k": 5,
        "w_bcd": 1.0,
        "w_scd": 2.0,
        "w_wcd": 8.0,
        "bcd": True,
        "scd": True,
        "wcd": True,
        "weights": "given",
    }


def test_resolved_params_are_canonical_and_json_able():
    resolved = methods.resolve_params("dkd", temperature=4, beta=2)
    assert resolved == methods.resolve_params("dkd", temperature=4.0, beta=2.0, warmup=20)
    assert isinstance(resolved["temperature"], float) and isinstance(resolved["beta"], float)
    assert json.loads(json.dumps(resolved)) == resolved
    for name in methods.available():
        method = methods.create(name, num_classes=100)
        every = dataclasses.asdict(method.params)
        every.pop("standardize", None)  # an added option, left out at its default
        assert every == methods.resolve_params(name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            method.params.w_ce = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("kd", {"temperature": -1.0}, "temperature=-1.0 must be > 0"),
        ("kd", {"temperature": 0}, "must be > 0"),
        ("kd", {"w_kd": -0.5}, "w_kd=-0.5 must be >= 0"),
        ("kd", {"w_ce": True}, "must be a finite number"),
        ("kd", {"temperature": float("nan")}, "must be a finite number"),
        ("kd", {"temperature": "4"}, "must be a finite number"),
        ("dkd", {"warmup": 0}, "warmup=0 must be >= 1"),
        ("dkd", {"warmup": 2.5}, "warmup=2.5 must be an integer"),
        ("dkd", {"beta": -8.0}, "beta=-8.0 must be >= 0"),
        ("cakd", {"warmup": -3}, "warmup=-3 must be >= 1"),
        ("cakd", {"weights": "uniform"}, "weights='uniform' must be one of 'given', 'natural'"),
        ("cakd", {"bcd": 1}, "bcd=1 must be true or false"),
        ("cakd", {"k": -1}, "k=-1 must be >= 0"),
        ("cakd", {"k": 1.0}, "must be an integer"),
    ],
)
def test_bad_values_are_rejected_with_one_line(name, params, expected):
    assert expected in error_of(name, **params)


def test_cakd_with_every_term_off_points_to_ce():
    message = error_of("cakd", bcd=False, scd=False, wcd=False)
    assert "'ce'" in message


@pytest.mark.parametrize("num_classes, k", [(100, 99), (100, 1000), (10, 9), (2, 1)])
def test_cakd_k_out_of_range_names_the_range(num_classes, k):
    message = error_of("cakd", num_classes=num_classes, k=k)
    assert f"k={k}" in message and f"0..{num_classes - 2}" in message
    methods.create("cakd", num_classes=num_classes, k=num_classes - 2)


def test_num_classes_must_be_an_integer_of_at_least_two():
    assert "num_classes=1 must be an integer >= 2" in error_of("kd", num_classes=1)
    assert "num_classes=10.0" in error_of("ce", num_classes=10.0)


def test_cakd_k_is_checked_against_the_logits_when_num_classes_was_not_given():
    student, teacher, target = draw(0, classes=6)
    method = methods.create("cakd", k=5)
    with pytest.raises(MethodError, match=r"0\.\.4"):
        method(student, teacher, target, 1)
    methods.create("cakd", k=4)(student, teacher, target, 1)


def test_register_method_adds_a_method_and_refuses_a_second_one_by_the_same_name():
    @dataclasses.dataclass(frozen=True)
    class HalfParams:
        scale: float = 0.5

        def validate(self, num_classes):
            pass

    try:

        @methods.register_method("half_ce", needs=methods.Needs(teacher=False))
        class HalfCE(methods.Method):
            Params = HalfParams

            def terms(self, student, teacher, target, epoch):
                return {"ce": self.params.scale * F.cross_entropy(student, target)}

        assert "half_ce" in methods.available()
        student, _, target = draw(1)
        out = methods.create("half_ce", scale=2)(student, None, target, 1)
        torch.testing.assert_close(out["loss"], 2 * F.cross_entropy(student, target))
        with pytest.raises(MethodError, match="registered twice"):
            methods.register_method("half_ce")(HalfCE)
    finally:
        _METHODS.pop("half_ce", None)


# --- the output contract --------------------------------------------------------------------

KEYS = {
    "ce": ["loss", "ce"],
    "kd": ["loss", "ce", "kd"],
    "dkd": ["loss", "ce", "tckd", "nckd"],
    "cakd": ["loss", "ce", "bcd", "scd", "wcd"],
}


def _prepared(name: str, classes: int = C) -> methods.Method:
    """A method made and prepared as the engine does, from what it declares it needs."""
    method = methods.create(name, num_classes=classes)
    context = methods.MethodContext(
        num_classes=classes, train_size=10, dataset="synthetic", device=torch.device("cpu"),
        teacher_classifier=torch.nn.Linear(8, classes) if method.needs.teacher_classifier
        else None,
    )
    assert method.prepare(context) is None
    return method


def _outputs(name: str, dtype=torch.float32) -> dict:
    """The method's terms on drawn logits, given only what it declares it needs: no teacher
    logits when it needs no teacher, the weak then strong views' logits when it needs two."""
    method = _prepared(name)
    student, teacher, target = draw(2, dtype=dtype)
    if method.needs.two_views:
        student, teacher = torch.cat([student, student.flip(0)]), torch.cat([teacher, teacher])
    return method(student, teacher if method.needs.teacher else None, target, 3)


@pytest.mark.parametrize("name", methods.available())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_method_gives_float32_scalar_terms_that_add_up_to_its_loss(name, dtype):
    out = _outputs(name, dtype)
    assert next(iter(out)) == "loss" and len(out) > 1
    for value in out.values():
        assert value.dtype == torch.float32 and value.shape == ()
    total = torch.zeros(())
    for key in list(out)[1:]:
        total = total + out[key]
    assert torch.equal(out["loss"], total)


@pytest.mark.parametrize("name", sorted(KEYS))
def test_the_papers_terms_are_named_as_the_papers_name_them(name):
    assert list(_outputs(name)) == KEYS[name]


@pytest.mark.parametrize("name", methods.available())
def test_every_method_is_a_module_that_trains_on_what_it_declares_it_needs(name):
    """A method that declares no teacher trains without teacher logits (the engine gives it
    none); one that declares a teacher is given them."""
    method = _prepared(name)
    assert isinstance(method, torch.nn.Module)
    loss = _outputs(name)["loss"]
    assert torch.isfinite(loss)


def test_ce_ignores_the_teacher():
    student, teacher, target = draw(3)
    method = methods.create("ce")
    without = method(student, None, target, 1)
    other_teacher = method(student, teacher * 7 + 1, target, 5)
    assert torch.equal(without["loss"], F.cross_entropy(student, target))
    assert torch.equal(without["loss"], other_teacher["loss"])
    assert list(without) == ["loss", "ce"]


@pytest.mark.parametrize("name", ["kd", "dkd", "cakd"])
def test_teacher_methods_refuse_a_missing_teacher(name):
    student, _, target = draw(4)
    with pytest.raises(MethodError, match="needs teacher_logits"):
        methods.create(name)(student, None, target, 1)


# --- warm-up --------------------------------------------------------------------------------


def test_warmup_factor_is_per_epoch_one_based():
    assert warmup_factor(1, 20) == 1 / 20
    assert [warmup_factor(e, 20) for e in (1, 2, 19, 20, 21, 300)] == [
        1 / 20,
        2 / 20,
        19 / 20,
        1.0,
        1.0,
        1.0,
    ]
    assert all(warmup_factor(e, 1) == 1.0 for e in range(1, 30))
    for epoch in (0, -1, 1.5, True, None):
        with pytest.raises(MethodError, match="epoch"):
            warmup_factor(epoch, 20)  # type: ignore[arg-type]


@pytest.mark.parametrize("epoch", [0, 2.0])
def test_methods_reject_a_bad_epoch(epoch):
    student, teacher, target = draw(5)
    for name in methods.available():
        with pytest.raises(MethodError, match="epoch"):
            methods.create(name)(student, teacher, target, epoch)


@pytest.mark.parametrize("name", ["dkd", "cakd"])
def test_warmup_scales_the_distillation_term_and_not_ce(name):
    distill = {"dkd": ("tckd", "nckd"), "cakd": ("bcd", "scd", "wcd")}[name]
    warm = methods.create(name, warmup=20, w_ce=1.0)
    none = methods.create(name, warmup=1, w_ce=1.0)
    # the loop passes the same epoch for the first and the last step of an epoch
    for epoch, factor in ((1, 1 / 20), (1, 1 / 20), (20, 1.0), (21, 1.0), (7, 7 / 20)):
        for step in (0, 1):  # a first and a last batch of that epoch
            student, teacher, target = draw(10 * epoch + step)
            slow = warm(student, teacher, target, epoch)
            full = none(student, teacher, target, epoch)
            assert torch.equal(slow["ce"], full["ce"])
            for key in distill:
                torch.testing.assert_close(slow[key], factor * full[key], rtol=1e-12, atol=0)
            torch.testing.assert_close(
                slow["loss"] - slow["ce"],
                factor * (full["loss"] - full["ce"]),
                rtol=1e-12,
                atol=0,
            )
    # warmup 1 means none: every epoch gives the same loss
    student, teacher, target = draw(6)
    first = none(student, teacher, target, 1)["loss"]
    assert all(torch.equal(none(student, teacher, target, e)["loss"], first) for e in (2, 50))


def test_kd_has_no_warmup():
    student, teacher, target = draw(7)
    kd = methods.create("kd")
    assert torch.equal(
        kd(student, teacher, target, 1)["loss"], kd(student, teacher, target, 200)["loss"]
    )


# --- cakd switches --------------------------------------------------------------------------

SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(("bcd", "scd", "wcd"), n)]


@pytest.mark.parametrize("enabled", SUBSETS, ids=["+".join(s) for s in SUBSETS])
@pytest.mark.parametrize("weights", ["given", "natural"])
def test_each_cakd_switch_removes_exactly_its_term(enabled, weights):
    student, teacher, target = draw(8, batch=16, classes=20)
    params = dict(k=3, w_scd=0.7, w_wcd=3.0, weights=weights)
    full = methods.create("cakd", **params)(student, teacher, target, 4)
    switches = {key: key in enabled for key in ("bcd", "scd", "wcd")}
    out = methods.create("cakd", **params, **switches)(student, teacher, target, 4)
    assert list(out) == ["loss", "ce", *enabled]
    expected = torch.zeros((), dtype=torch.float64) + full["ce"]
    for key in enabled:
        assert torch.equal(out[key], full[key])
        expected = expected + full[key]
    assert torch.equal(out["loss"], expected)


# --- strong set ----------------------------------------------------------------------------


def test_strong_set_takes_the_teachers_top_k_non_targets_ties_in_index_order():
    from methods.cakd import strong_mask

    teacher = torch.tensor([[0.0, 5.0, 1.0, 5.0, 9.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    target = torch.tensor([4, 1])
    rows = strong_mask(teacher, target, 3).tolist()
    assert rows[0] == [False, True, True, True, True, False]  # 5, 5 then the first 1 (index 2)
    assert rows[1] == [True, True, True, True, False, False]  # ties: lowest indices, y = 1
    assert strong_mask(teacher, target, 0).tolist() == F.one_hot(target, 6).bool().tolist()
    assert strong_mask(teacher, target, 4).sum(1).tolist() == [5, 5]
