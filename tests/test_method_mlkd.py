"""mlkd (Jin et al., CVPR 2023): golden values and gradients from the authors' released code,
gradcheck, properties that can fail, and the two views it needs from the data layer (the same on
every backend, a pure function of seed, epoch and index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from methods.mlkd import kept_fraction

# Literal logits (B 6, C 5; weak views, then strong views) run once through the authors' code,
# Jin-Ying/Multi-Level-Logit-Distillation mdistiller/distillers/KD_ours.py at 5ee473f,
# KD_ours.forward_train with T 4, CE weight 0.1, KD weight 0.9 (mdistiller's cfg defaults), with
# models that return these logits, in float64; gradients of the summed losses dict.
S_WEAK = [[-6.93, -1.12, -3.18, 3.0, -2.65],
     [-3.83, -1.87, -2.6, -3.89, 4.57],
     [0.97, 6.05, 3.41, -3.68, 1.56],
     [-2.86, -0.28, 1.67, -0.03, -3.65],
     [-3.8, -3.36, -5.24, 3.12, 1.96],
     [0.44, -3.44, 5.62, -0.93, 0.72]]
S_STRONG = [[1.11, -0.56, -9.44, -0.34, 5.09],
     [-2.0, -1.76, 8.5, -5.88, 0.66],
     [-4.14, -6.16, 0.14, -1.16, -1.57],
     [-1.78, -2.67, -1.34, -2.1, 0.98],
     [-2.62, 1.18, 1.14, -0.2, -2.27],
     [1.11, -0.52, 2.93, 1.25, -1.5]]
T_WEAK = [[4.44, 1.1, -2.75, -2.3, -2.37],
     [2.48, -5.95, 5.45, 7.87, -0.17],
     [-5.6, -0.95, 0.83, -0.47, -0.47],
     [6.21, -1.28, 6.25, -0.81, 4.38],
     [0.21, 0.05, -1.32, 5.71, 0.41],
     [-5.71, 3.33, 3.5, 1.05, -1.62]]
T_STRONG = [[-0.44, 4.05, 0.21, -4.39, 5.25],
     [5.18, 0.37, -2.6, 4.74, 2.96],
     [-2.08, -5.22, 2.48, -2.76, -0.15],
     [-1.15, -1.06, 0.89, -1.45, 2.18],
     [2.39, 1.52, 0.8, -4.55, -1.29],
     [3.15, 5.16, -9.03, 4.0, 5.18]]
TARGET = [0, 1, 2, 3, 4, 0]
GOLDEN_TERMS = {"ce": 0.8683704204836218, "kd": 53.934066312814366,
                "cc": 0.38506959033297444, "bc": 0.12047504134082766}
GOLDEN_GRAD_WEAK = [[-1.2108658513621426,
      -0.0745626984932994,
      0.06291909587998185,
      1.1282640814763165,
      0.09424537249914323],
     [-0.14487581062823437,
      0.24185672109484896,
      -0.43019941522430843,
      -1.1106743650410758,
      1.4438928697987696],
     [0.1503950451008882,
      0.7249145551091312,
      -0.2368370156416974,
      -0.44936318409556913,
      -0.18910940047275318],
     [-0.5798878149152602,
      0.40155675891499537,
      0.08291142653819092,
      0.3881457216606821,
      -0.29272609219860807],
     [-0.12457526497444785,
      -0.08618741429217704,
      -0.0829717988082078,
      -0.19773463555029072,
      0.49146911362512374],
     [0.23794311098771026,
      -0.6999194335546427,
      0.5382476131750313,
      -0.2119242055448459,
      0.13565291493674714]]
GOLDEN_GRAD_STRONG = [[0.14567141877510711,
      -0.32948341594836666,
      -0.18826632928334955,
      0.17126748719450374,
      0.20081083926210513],
     [-0.5105418013142212,
      -0.09266221548655626,
      1.2674641132966435,
      -0.5073759775537704,
      -0.15688411894209564],
     [-0.042773923912755654,
      0.010545942048760039,
      -0.18845732391801512,
      0.22959147547811484,
      -0.008906169696104109],
     [0.04844948637757671,
      -0.01852959358933587,
      -0.08738344607558171,
      0.02660175509250307,
      0.03086179819483785],
     [-0.38899864519924837,
      0.04719402369611624,
      0.11976883854057466,
      0.25653640431367586,
      -0.03450062135111827],
     [0.037981677594372605,
      -0.2799673379861903,
      0.5850416637720006,
      -0.007025857147483005,
      -0.3360301462326998]]


def _golden_inputs(dtype=torch.float64):
    student = torch.tensor(S_WEAK + S_STRONG, dtype=dtype, requires_grad=True)
    teacher = torch.tensor(T_WEAK + T_STRONG, dtype=dtype)
    return student, teacher, torch.tensor(TARGET)


def test_golden_terms_and_gradient_of_the_authors_code():
    student, teacher, target = _golden_inputs()
    terms = methods.create("mlkd", num_classes=5)(student, teacher, target, 1)
    for name, value in GOLDEN_TERMS.items():
        torch.testing.assert_close(terms[name].item(), value, rtol=1e-6, atol=0.0)
    terms["loss"].backward()
    expected = torch.tensor(GOLDEN_GRAD_WEAK + GOLDEN_GRAD_STRONG, dtype=torch.float64)
    torch.testing.assert_close(student.grad, expected, rtol=1e-6, atol=1e-12)


def test_gradcheck_on_a_tiny_case():
    student, teacher, target = _golden_inputs()
    model = methods.create("mlkd", num_classes=5)

    def loss(logits):
        return model(logits, teacher, target, 3)["loss"]

    assert torch.autograd.gradcheck(loss, (student.detach()[:, :].clone().requires_grad_(),))


@pytest.mark.parametrize("seed", range(5))
def test_a_student_equal_to_its_teacher_leaves_only_the_two_cross_entropies(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, 10, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 10, (8,), generator=g)
    terms = methods.create("mlkd", num_classes=10)(logits, logits, target, 1)
    for name in ("kd", "cc", "bc"):
        assert abs(terms[name].item()) < 1e-12, name
    ce = torch.nn.functional.cross_entropy
    expected = 0.1 * (ce(logits[:8], target) + ce(logits[8:], target))
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", range(5))
def test_the_masks_keep_what_numpys_median_keeps(seed):
    values = torch.rand(2 * seed + 3 + (seed % 2), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    kept = (values.numpy() <= np.percentile(values.numpy(), 50)).mean()
    assert kept_fraction(values).item() == pytest.approx(kept, abs=0.0)


@pytest.mark.parametrize("temperature", [4.0, 1.0])
def test_losses_stay_finite_at_extreme_logits(temperature):
    g = torch.Generator().manual_seed(0)
    student = (torch.randn(16, 100, generator=g) * 1e4).requires_grad_()
    teacher = torch.randn(16, 100, generator=g) * 1e4
    target = torch.randint(0, 100, (8,), generator=g)
    out = methods.create("mlkd", num_classes=100, temperature=temperature)(
        student, teacher, target, 1
    )
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(student.grad).all()


def test_the_strong_view_is_the_same_on_every_backend_and_a_function_of_seed_epoch_index(
    tmp_path,
):
    from bench.data.loaders import make_loaders
    from bench.spec import DataSpec, SyntheticConfig

    data = {"dataset": "synthetic", "synthetic": SyntheticConfig(train_per_class=6,
                                                                 test_per_class=2)}
    batches = {}
    for backend in ("memory", "torch", "ffcv"):
        loaders = make_loaders(DataSpec(**data, backend=backend), batch_size=16, seed=1,
                               device="cpu", workdir=tmp_path, views=2)
        batches[backend] = [(x.clone(), y.clone(), i.clone()) for x, y, i in loaders.train.epoch(2)]
    for backend in ("torch", "ffcv"):
        for (a, la, ia), (b, lb, ib) in zip(batches["memory"], batches[backend], strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ia, ib), backend
    images, labels, _ = batches["memory"][0]
    assert images.shape == (32, 3, 32, 32) and labels.shape == (16,)
    one_view = make_loaders(DataSpec(**data), batch_size=16, seed=1, device="cpu",
                            workdir=tmp_path)
    weak = next(iter(one_view.train.epoch(2)))[0]
    assert torch.equal(images[:16], weak)  # the weak view is the single-view batch
    assert not torch.equal(images[16:], weak)
    again = make_loaders(DataSpec(**data), batch_size=16, seed=1, device="cpu",
                         workdir=tmp_path, views=2)
    assert torch.equal(next(iter(again.train.epoch(2)))[0], images)  # resumable: no RNG state
    assert not torch.equal(next(iter(again.train.epoch(3)))[0][16:], images[16:])


def test_two_views_are_refused_in_one_line_where_they_cannot_be_served():
    from bench.errors import SpecError
    from bench.spec import build_matrix

    raw = {"name": "m", "pairs": [{"teacher": "torchvision:resnet34",
                                   "student": "torchvision:resnet18"}],
           "methods": ["mlkd"], "data": {"dataset": "imagenet"}}
    with pytest.raises(SpecError, match="method 'mlkd': data: a two-view method needs a strong "
                       "view.*not imagenet at 224 px"):
        build_matrix(raw, "t", data_hash="h")
    raw = {"name": "m", "pairs": [{"teacher": "resnet20", "student": "resnet8"}],
           "methods": ["mlkd"], "data": {"dataset": "synthetic"}}
    with pytest.raises(SpecError, match="--teacher-cache: method 'mlkd' sees a strong view"):
        build_matrix(raw, "t", data_hash="h", teacher_cache="float16")
    build_matrix(raw, "t", data_hash="h")


def test_bench_list_methods_shows_mlkd_with_its_paper_and_formula(capsys):
    from bench.__main__ import main

    assert main(["list", "methods", "mlkd"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mlkd: MLKD (Jin et al., CVPR 2023) (needs: teacher, two_views)")
    assert "τ ∈ {T,3,5,2,6}" in out and "\nkd:" not in out  # the pattern filters


def test_the_strong_view_paints_the_authors_cutout_on_most_images():
    from bench.data.augment import CIFAR100_NORMALIZATION
    from bench.data.strong_augment import CUTOUT_FILL, strong_view

    black = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    out = strong_view(black, seed=0, epoch=1, indices=torch.arange(64),
                      stats=CIFAR100_NORMALIZATION)
    mean, std = CIFAR100_NORMALIZATION.tensors("cpu")
    pixels = (out * std + mean) * 255
    grey = torch.tensor(CUTOUT_FILL, dtype=torch.float32).view(1, 3, 1, 1)
    painted = ((pixels - grey).abs() < 0.5).all(dim=1).flatten(1).any(dim=1)
    # the side is U(0, 0.5) of the image: under one pixel for about 1 in 16 images
    assert 0.8 <= painted.float().mean().item() <= 1.0
