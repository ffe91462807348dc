"""methods/: golden values, the exact KL decomposition, gradients and extreme inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import methods
from methods.cakd import strong_mask
from methods.partition_kl import partition_kl

RTOL64 = dict(rtol=1e-10, atol=0.0)
TOL32 = dict(rtol=1e-5, atol=1e-6)

# --- golden values (the loss definitions in each method's paper) ---------------------------

Z_S = [[1.0, 2.0, 0.5, -1.0, 0.0, 0.7], [0.3, -0.2, 2.5, 1.0, -1.5, 0.0]]
Z_T = [[2.0, 1.0, 0.0, -2.0, 0.5, 1.5], [0.0, 0.5, 4.0, -1.0, 1.0, 2.0]]
Y = [0, 2]
GOLDEN_KD = {
    1.0: (0.284537223028, 0.105345376435, 0.606205681638),
    4.0: (0.633940763469, 0.100445058421, 0.762891640031),
}
GOLDEN_CAKD = {
    (1.0, 1): (0.203343450520, 0.008166655395, 0.633876381303),
    (1.0, 2): (0.089338126519, 0.202763322207, 0.334885240666),
    (4.0, 1): (0.257457819354, 0.017022814996, 0.736447066805),
    (4.0, 2): (0.345642870883, 0.240404249706, 0.395212164895),
}


def golden_inputs():
    f64 = torch.float64
    return torch.tensor(Z_S, dtype=f64), torch.tensor(Z_T, dtype=f64), torch.tensor(Y)


def close(actual, expected, **tol):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **tol)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_golden_kd_tckd_nckd(temperature):
    student, teacher, target = golden_inputs()
    kd_term, tckd, nckd = GOLDEN_KD[temperature]
    kd = methods.create("kd", temperature=temperature, w_ce=0.0, w_kd=1.0)
    close(kd(student, teacher, target, 1)["kd"], kd_term, **RTOL64)
    dkd = methods.create("dkd", temperature=temperature, alpha=1.0, beta=1.0, warmup=1)
    out = dkd(student, teacher, target, 1)
    close(out["tckd"], tckd, **RTOL64)
    close(out["nckd"], nckd, **RTOL64)


@pytest.mark.parametrize("temperature, k", sorted(GOLDEN_CAKD))
def test_golden_cakd_terms(temperature, k):
    student, teacher, target = golden_inputs()
    cakd = methods.create(
        "cakd", temperature=temperature, k=k, warmup=1, w_kd=1.0, w_bcd=1.0, w_scd=1.0, w_wcd=1.0
    )
    out = cakd(student, teacher, target, 1)
    for key, expected in zip(("bcd", "scd", "wcd"), GOLDEN_CAKD[temperature, k], strict=True):
        close(out[key], expected, **RTOL64)


# --- property 1: BCD + P_t,S·SCD + P_t,W·WCD = KL ----------------------------------------------

CASES = [(c, t, k) for c in (10, 100, 1000) for t in (1.0, 4.0) for k in (0, 1, 5, c - 2)]


def direct_kl(teacher, student):
    """KL(p_t ‖ p_s) per sample, written directly with log_softmax (the reference)."""
    log_p_t, log_p_s = F.log_softmax(teacher, dim=1), F.log_softmax(student, dim=1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(dim=1)


def draws(seed, classes, scales, count=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    for i in range(count):
        batch = int(torch.randint(1, 65, (1,), generator=gen))
        scale = scales[i % len(scales)]
        student = torch.randn(batch, classes, generator=gen, dtype=dtype) * scale
        teacher = torch.randn(batch, classes, generator=gen, dtype=dtype) * scale
        yield student, teacher, torch.randint(0, classes, (batch,), generator=gen)


def recomposed(teacher, student, target, temperature, k):
    parts = partition_kl(
        teacher / temperature, student / temperature, strong_mask(teacher, target, k)
    )
    whole = parts.binary + parts.teacher_mass_s * parts.inside_s
    return whole + parts.teacher_mass_w * parts.inside_w


@pytest.mark.parametrize("classes, temperature, k", CASES)
def test_partition_recomposes_kl_float64(classes, temperature, k):
    for student, teacher, target in draws(classes + k, classes, scales=(0.5, 3.0, 10.0)):
        torch.testing.assert_close(
            recomposed(teacher, student, target, temperature, k),
            direct_kl(teacher / temperature, student / temperature),
            **RTOL64,
        )


@pytest.mark.parametrize("classes, temperature, k", CASES)
def test_partition_recomposes_kl_float32(classes, temperature, k):
    # Compared with the float64 KL of the same float32 logits. The draws keep |z / T| near the
    # usual logit range: past ~10 a log-probability's float32 rounding alone exceeds atol 1e-6.
    for student, teacher, target in draws(7 * classes + k, classes, (1.5, 3.0), 4, torch.float32):
        actual = recomposed(teacher, student, target, temperature, k)
        assert actual.dtype == torch.float32
        expected = direct_kl(teacher.double() / temperature, student.double() / temperature)
        torch.testing.assert_close(actual.double(), expected, **TOL32)


@pytest.mark.parametrize("classes, temperature, k", CASES)
def test_partition_recomposes_kl_at_logits_of_1e4(classes, temperature, k):
    for student, teacher, target in draws(3 * classes + k, classes, scales=(1e4,)):
        teacher[:, 0] = 1e4  # also a teacher sure of one class (p_t -> 1 there)
        expected = direct_kl(teacher / temperature, student / temperature)
        assert (expected > 1.0).any()
        # atol: where the KL is ~0 (it underflows), the reference's own rounding is ~1e-16·|z|
        torch.testing.assert_close(
            recomposed(teacher, student, target, temperature, k), expected, rtol=1e-10, atol=1e-10
        )


def test_nckd_is_exact_where_minus_1000_masking_fails():
    # target margin 3000 at T = 1: mdistiller's NCKD comes out 0 or NaN; the exact value is
    # the KL of the softmaxes over the non-target columns.
    gen = torch.Generator().manual_seed(11)
    student = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    teacher = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    target = torch.tensor([0, 3, 9, 3])
    rows = torch.arange(4)
    student[rows, target] += 3000.0
    teacher[rows, target] += 3000.0
    keep = ~F.one_hot(target, 10).bool()
    expected = direct_kl(teacher[keep].view(4, 9), student[keep].view(4, 9)).mean()
    assert expected > 0
    dkd = methods.create("dkd", temperature=1.0, alpha=1.0, beta=1.0, warmup=1)
    for dtype, tol in ((torch.float64, RTOL64), (torch.float32, TOL32)):
        out = dkd(student.to(dtype), teacher.to(dtype), target, 1)
        close(out["nckd"], expected.item(), **tol)
        assert out["tckd"] >= 0 and torch.isfinite(out["tckd"])


def test_binary_term_is_accurate_in_float32_when_one_group_holds_almost_all_mass():
    # P_W ~ 1e-3: log P_W as lse_W - lse(all) would lose ~1e-6 absolute, as large as the term
    gen = torch.Generator().manual_seed(21)
    for classes in (10, 100, 1000):
        teacher = torch.randn(64, classes, generator=gen) * 2
        student = teacher + 0.3 * torch.randn(64, classes, generator=gen)
        mask = torch.zeros(64, classes, dtype=torch.bool)
        mask[:, : classes // 2] = True
        teacher[mask] += 6.0
        student[mask] += 6.0
        expected = partition_kl(teacher.double(), student.double(), mask).binary
        actual = partition_kl(teacher, student, mask).binary
        torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-7)


# --- properties 2 and 3: cakd reduces to dkd (k = 0) and to kd (natural weights) --------------


@pytest.mark.parametrize("classes, temperature, k", CASES)
def test_cakd_k0_is_dkd_and_natural_is_kd(classes, temperature, k):
    gen = torch.Generator().manual_seed(classes * 10 + k)
    alpha, beta, w_scd, w_ce = (float(v) for v in torch.rand(4, generator=gen) * 5)
    warmup, epoch = int(torch.randint(1, 30, (1,), generator=gen)), 1 + k % 25
    dkd = methods.create(
        "dkd", temperature=temperature, alpha=alpha, beta=beta, w_ce=w_ce, warmup=warmup
    )
    cakd0 = methods.create(
        "cakd",
        temperature=temperature,
        k=0,
        w_bcd=alpha,
        w_wcd=beta,
        w_scd=w_scd,
        w_kd=1.0,
        w_ce=w_ce,
        warmup=warmup,
    )
    kd = methods.create("kd", temperature=temperature, w_ce=0.1, w_kd=0.9)
    natural = methods.create(
        "cakd", temperature=temperature, k=k, weights="natural", w_ce=0.1, w_kd=0.9, warmup=1
    )
    # float32: these terms are T²·KL, so KL's rounding (atol 1e-6) is scaled by T² and weights
    scaled32 = dict(rtol=1e-5, atol=1e-6 * temperature**2 * max(1.0, alpha, beta, w_ce))
    for dtype, tol in ((torch.float64, RTOL64), (torch.float32, scaled32)):
        for student, teacher, target in draws(k, classes, (0.5, 3.0), 2, dtype):
            want, got = dkd(student, teacher, target, epoch), cakd0(student, teacher, target, epoch)
            assert torch.equal(got["scd"], torch.zeros((), dtype=dtype))
            torch.testing.assert_close(got["bcd"], want["tckd"], **tol)
            torch.testing.assert_close(got["wcd"], want["nckd"], **tol)
            torch.testing.assert_close(got["loss"], want["loss"], **tol)

            want, got = kd(student, teacher, target, epoch), natural(student, teacher, target, 9)
            torch.testing.assert_close(got["loss"], want["loss"], **tol)
            torch.testing.assert_close(got["bcd"] + got["scd"] + got["wcd"], want["kd"], **tol)


def test_natural_is_kd_at_logits_of_1e4():
    for student, teacher, target in draws(5, 100, scales=(1e4,)):
        kd = methods.create("kd", temperature=4.0)(student, teacher, target, 1)
        natural = methods.create("cakd", weights="natural", w_ce=0.1, w_kd=0.9, warmup=1)
        torch.testing.assert_close(
            natural(student, teacher, target, 1)["loss"], kd["loss"], **RTOL64
        )


# --- groups of one and empty groups -----------------------------------------------------------


def test_singleton_and_empty_groups_are_exact_with_finite_gradients():
    gen = torch.Generator().manual_seed(3)
    student = torch.randn(4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0] = True  # W empty
    mask[2, 3] = True  # S = {3}
    mask[3, 1:] = True  # W = {0}
    parts = partition_kl(teacher, student, mask)  # row 1: S empty
    full = direct_kl(teacher, student)
    assert parts.binary[:2].tolist() == [0.0, 0.0]
    assert parts.teacher_mass_s[:2].tolist() == [1.0, 0.0]
    assert parts.teacher_mass_w[:2].tolist() == [0.0, 1.0]
    assert parts.inside_w[0] == 0 and parts.inside_s[1] == 0
    assert parts.inside_s[2] == 0 and parts.inside_w[3] == 0
    torch.testing.assert_close(parts.inside_s[0], full[0], **RTOL64)
    torch.testing.assert_close(parts.inside_w[1], full[1], **RTOL64)
    whole = parts.binary + parts.teacher_mass_s * parts.inside_s
    torch.testing.assert_close(whole + parts.teacher_mass_w * parts.inside_w, full, **RTOL64)
    sum(parts).sum().backward()
    assert torch.isfinite(student.grad).all()
    assert torch.autograd.gradcheck(
        lambda s: torch.cat(partition_kl(teacher, s, mask)), (student.detach().requires_grad_(),)
    )


# --- gradients --------------------------------------------------------------------------------

GRAD_METHODS = [
    ("kd", {"temperature": 4.0}, True),
    ("dkd", {"temperature": 4.0, "warmup": 5}, True),
    ("cakd", {"k": 0, "warmup": 5}, True),
    ("cakd", {"k": 3, "temperature": 1.0}, True),
    ("cakd", {"k": 3, "bcd": False}, True),
    ("cakd", {"k": 2, "weights": "natural"}, False),  # natural weights are detached
]


@pytest.mark.parametrize("name, params, through_teacher", GRAD_METHODS)
@pytest.mark.parametrize("batch, classes", [(1, 5), (4, 12)])
def test_gradcheck_float64(name, params, through_teacher, batch, classes):
    gen = torch.Generator().manual_seed(batch * classes)
    student = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * 2
    teacher = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * 2
    target = torch.randint(0, classes, (batch,), generator=gen)
    method = methods.create(name, num_classes=classes, **params)

    def terms(s, t):
        return torch.stack(list(method(s, t, target, 2).values()))

    student.requires_grad_()
    teacher.requires_grad_(through_teacher)
    assert torch.autograd.gradcheck(terms, (student, teacher))


def extreme_cases():
    """(label, student, teacher, target): logits up to 1e4, p_t,y -> 1, a batch of one."""
    gen = torch.Generator().manual_seed(17)
    classes = 12
    target = torch.randint(0, classes, (8,), generator=gen)
    onehot = F.one_hot(target, classes).float()
    noise = torch.randn(8, classes, generator=gen)
    yield "1e4", noise * 1e4, torch.randn(8, classes, generator=gen) * 1e4, target
    yield "sure_teacher", noise, onehot * 1e4, target
    yield "both_sure", onehot * 1e4, onehot * 1e4 + noise, target
    yield "sure_wrong", onehot.roll(1, dims=1) * 1e4, onehot * 50, target
    yield "equal_logits", torch.zeros(8, classes), torch.zeros(8, classes), target
    yield "batch_of_one", noise[:1] * 30, (onehot[:1] * 1e4), target[:1]


ALL_METHODS = [
    ("ce", {}),
    ("kd", {}),
    ("dkd", {}),
    ("cakd", {"k": 0}),
    ("cakd", {}),
    ("cakd", {"k": 10}),
    ("cakd", {"weights": "natural"}),
]


@pytest.mark.parametrize("name, params", ALL_METHODS)
@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16_autocast"])
def test_extreme_inputs_give_finite_float32_terms_and_gradients(name, params, autocast):
    method = methods.create(name, **params)
    for label, student, teacher, target in extreme_cases():
        dtype = torch.bfloat16 if autocast else torch.float32
        student = student.detach().to(dtype).clone().requires_grad_()
        teacher = teacher.detach().to(dtype).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = method(student, teacher, target, 3)
        for key, value in out.items():
            assert value.dtype == torch.float32, (label, key)
            assert torch.isfinite(value), (label, key)
            assert value >= 0 or key == "loss", (label, key)
        out["loss"].backward()
        assert torch.isfinite(student.grad.float()).all(), label
        if method.needs.teacher and teacher.grad is not None:
            assert torch.isfinite(teacher.grad.float()).all(), label
