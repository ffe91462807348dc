"""The logit methods after DKD (issue: LS, TTM/WTTM, NKD): golden values and gradients from the
authors' released code, gradcheck, and properties that can fail (KD limits, invariances, finite
losses at extreme logits)."""

from __future__ import annotations

import pytest
import torch

import methods
from bench.spec import load_matrix

# A literal input, run once through the authors' released loss code (outside this project, in
# float64) for the golden losses and d loss / d student logits below.
Y_S = [[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.2, 3.0]]
Y_T = [[2.0, 0.5, -1.0, 0.0], [-0.3, 1.5, 0.7, 2.2]]
TARGET = [0, 3]
GOLDEN = {
    # zkxufo/TTM distiller_zoo/ttm.py TTM(l=0.3)(y_s, y_t)
    ("ttm", (("gamma", 0.3), ("w_ce", 0.0), ("w_kd", 1.0))): (
        0.7334330781564493,
        [[-0.0801627083345417, -0.09781276524473259, 0.22785369845947834, -0.04987822488020407],
         [-0.05398126445578754, -0.11444244566615562, -0.10253091160370319, 0.2709546217256463]],
    ),
    # zkxufo/TTM distiller_zoo/wttm.py WTTM(l=0.3)(y_s, y_t)
    ("wttm", (("gamma", 0.3), ("w_ce", 0.0), ("w_kd", 1.0))): (
        1.767259173484597,
        [[-0.18757386202754234, -0.22887348136966806, 0.5331581116114468, -0.11671076821423633],
         [-0.13212956213706054, -0.28011997103454805, -0.2509641927118382, 0.6632137258834467]],
    ),
    # yzd-v/cls_KD mmcls/models/dis_losses/nkd.py at 9466b3f, NKDLoss(temp=3.0, gamma=3.5)
    ("nkd", (("temperature", 3.0), ("gamma", 3.5), ("w_ce", 0.0))): (
        37.600140078383674,
        [[-0.2750476680547622, -0.9827008598027278, 1.5417183758182278, -0.2839698479607373],
         [0.7938407008542229, -0.29725123016494825, -0.4644846696917831, -0.03210480099749214]],
    ),
    # sunshangquan/logit-standardization-KD mdistiller/distillers/KD.py kd_loss(T=2, stand=True)
    ("kd", (("temperature", 2.0), ("w_ce", 0.0), ("w_kd", 1.0), ("standardize", True))): (
        0.5414701859468039,
        [[-0.2010043679106108, 0.05010220985999123, 0.10634403885633559, 0.04455811919428399],
         [0.05175879772746292, -0.04134345455484605, -0.005959196106379889, -0.00445614706623698]],
    ),
    # the same repository's DKD.py dkd_loss(alpha=1, beta=8, T=2, stand=True), epoch past warm-up
    ("dkd", (("temperature", 2.0), ("w_ce", 0.0), ("alpha", 1.0), ("beta", 8.0),
             ("warmup", 1), ("standardize", True))): (
        5.5672888131528895,
        [[-0.6804361556606715, 0.2371899253417355, 0.39179870515114573, 0.05144752516778989],
         [0.7949810300368204, -0.45427867415928186, -0.21631875308921136, -0.12438360278832714]],
    ),
}
# JiamingLv/WKD mdistiller/distillers/WKD.py wkd_logit_loss_with_speration(T=2, gamma=1,
# sinkhorn 0.05 x 10) with the "fc" cost (COST_MATRIX_SHARPEN 1.0) of this classifier, its two
# .to(torch.float32) casts removed so that it runs in float64
WKD_CLASSIFIER = [[1.0, 0.2, -0.3], [0.4, 1.1, 0.0], [-0.2, 0.5, 0.9], [0.3, -0.7, 0.6]]
WKD_GOLDEN = (
    0.6769620920876733,
    [[-0.2750476680547622, 0.007352334145101988, 0.24535077993383606, 0.0223445539758242],
     [0.047694601756028854, -0.012143271376205732, -0.0034465293823310005, -0.03210480099749214]],
)
NEW = ("ttm", "wttm", "nkd", "wkd_l", "kd_dot")


def _wkd(**params):
    from methods.wkd_l import class_cost

    method = methods.create("wkd_l", num_classes=4, **params)
    classifier = torch.tensor(WKD_CLASSIFIER, dtype=torch.float64)
    method.set_cost(class_cost(classifier, method.params.sharpen))
    return method


def _inputs(dtype=torch.float64):
    student = torch.tensor(Y_S, dtype=dtype, requires_grad=True)
    return student, torch.tensor(Y_T, dtype=dtype), torch.tensor(TARGET)


@pytest.mark.parametrize("key", list(GOLDEN), ids=[k[0] for k in GOLDEN])
def test_golden_loss_and_gradient_of_the_authors_code(key):
    name, params = key
    loss_value, gradient = GOLDEN[key]
    student, teacher, target = _inputs()
    loss = methods.create(name, num_classes=4, **dict(params))(student, teacher, target, 1)["loss"]
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.tensor(loss_value, dtype=torch.float64),
                               rtol=1e-6, atol=0.0)
    torch.testing.assert_close(student.grad, torch.tensor(gradient, dtype=torch.float64),
                               rtol=1e-6, atol=1e-12)


def test_wkd_l_golden_loss_and_gradient_of_the_authors_code():
    student, teacher, target = _inputs()
    loss = _wkd(temperature=2.0, w_ce=0.0, w_wd=1.0)(student, teacher, target, 1)["loss"]
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.tensor(WKD_GOLDEN[0], dtype=torch.float64),
                               rtol=1e-6, atol=0.0)
    torch.testing.assert_close(student.grad, torch.tensor(WKD_GOLDEN[1], dtype=torch.float64),
                               rtol=1e-6, atol=1e-12)


def test_wkd_l_without_the_distance_is_ce_plus_nkds_target_term_and_decays_by_a_half_cosine():
    student, teacher, target = _random(3)
    wkd = methods.create("wkd_l", w_wd=0.0)
    wkd.set_cost(torch.rand(10, 10, dtype=torch.float64))
    nkd = methods.create("nkd", gamma=0.0)
    without = wkd(student, teacher, target, 1)["loss"]
    torch.testing.assert_close(without, nkd(student, teacher, target, 1)["loss"], rtol=1e-12,
                               atol=0.0)
    decaying = methods.create("wkd_l", w_wd=600.0, decay_start=150, decay_end=240)
    assert decaying.weight_at(150) == 600.0 and decaying.weight_at(240) == pytest.approx(0.0)
    assert decaying.weight_at(195) == pytest.approx(300.0)


def test_the_sinkhorn_distance_of_a_distribution_to_itself_is_small_and_to_another_larger():
    from methods.wkd_l import sinkhorn_distance

    g = torch.Generator().manual_seed(0)
    log_p = torch.log_softmax(torch.randn(4, 6, generator=g, dtype=torch.float64), 1)
    log_q = torch.log_softmax(torch.randn(4, 6, generator=g, dtype=torch.float64) * 3, 1)
    cost = 1 - torch.eye(6, dtype=torch.float64)  # W is then the total variation distance
    same = sinkhorn_distance(log_p, log_p, cost, 0.05, 200)
    other = sinkhorn_distance(log_p, log_q, cost, 0.05, 200)
    tv = 0.5 * (log_p.exp() - log_q.exp()).abs().sum(1)
    assert (same < 1e-3).all() and torch.allclose(other, tv, atol=5e-3)


@pytest.mark.parametrize("name", [*NEW, "kd_ls", "dkd_ls"])
def test_gradcheck_on_a_tiny_case(name):
    method, extra = name.removesuffix("_ls"), {"standardize": True} if name.endswith("_ls") else {}
    model = _wkd() if method == "wkd_l" else methods.create(method, num_classes=4, **extra)
    teacher, target = torch.tensor(Y_T, dtype=torch.float64), torch.tensor(TARGET)

    def loss(student):
        return model(student, teacher, target, 30)["loss"]

    assert torch.autograd.gradcheck(loss, (torch.tensor(Y_S, dtype=torch.float64,
                                                        requires_grad=True),))


def _random(seed, batch=16, classes=10, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, classes, generator=g, dtype=torch.float64) * scale,
            torch.randn(batch, classes, generator=g, dtype=torch.float64) * scale,
            torch.randint(0, classes, (batch,), generator=g))


@pytest.mark.parametrize("seed", range(5))
def test_ttm_at_gamma_one_is_kd_at_temperature_one(seed):
    student, teacher, target = _random(seed)
    ttm = methods.create("ttm", gamma=1.0, w_ce=0.3, w_kd=2.0)(student, teacher, target, 1)
    kd = methods.create("kd", temperature=1.0, w_ce=0.3, w_kd=2.0)(student, teacher, target, 1)
    torch.testing.assert_close(ttm["loss"], kd["loss"], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", range(5))
def test_ttm_with_gamma_one_over_t_matches_kd_with_a_tempered_teacher_only(seed):
    """TTM's teacher side is KD's at T = 1/γ; its student is untempered."""
    student, teacher, target = _random(seed)
    gamma = 0.25
    ttm = methods.create("ttm", gamma=gamma, w_ce=0.0, w_kd=1.0)(student, teacher, target, 1)
    log_p_t = torch.log_softmax(teacher / (1 / gamma), dim=1)
    kl = (log_p_t.exp() * (log_p_t - torch.log_softmax(student, dim=1))).sum(1).mean()
    torch.testing.assert_close(ttm["kd"], kl, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", range(5))
def test_wttm_weights_each_sample_by_its_teacher_power_sum(seed):
    student, teacher, target = _random(seed, batch=1)
    gamma = 0.4
    ttm = methods.create("ttm", gamma=gamma, w_ce=0.0, w_kd=1.0)(student, teacher, target, 1)
    wttm = methods.create("wttm", gamma=gamma, w_ce=0.0, w_kd=1.0)(student, teacher, target, 1)
    power_sum = (torch.softmax(teacher, dim=1) ** gamma).sum()
    torch.testing.assert_close(wttm["kd"], power_sum * ttm["kd"], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", ["kd", "dkd", "cakd"])
def test_standardized_losses_ignore_a_shift_and_a_positive_scale_of_each_row(name, seed):
    student, teacher, target = _random(seed)
    g = torch.Generator().manual_seed(100 + seed)
    shift = lambda z: z * (0.5 + 2 * torch.rand(len(z), 1, generator=g, dtype=z.dtype)) + (  # noqa: E731
        torch.randn(len(z), 1, generator=g, dtype=z.dtype) * 10)
    method = methods.create(name, num_classes=10, standardize=True)
    base = method(student, teacher, target, 30)
    moved = method(shift(student), shift(teacher), target, 30)
    for term in base:
        if term not in ("ce", "loss"):  # cross-entropy reads the raw student logits
            # exact but for the released code's 1e-7 added to the std (a relative 1e-7 / std)
            torch.testing.assert_close(moved[term], base[term], rtol=1e-6, atol=1e-12)
    plain = methods.create(name, num_classes=10)(shift(student), teacher, target, 30)
    assert not torch.allclose(plain["loss"] - plain["ce"], base["loss"] - base["ce"])


def test_nkd_sums_the_target_term_and_the_renormalized_non_target_cross_entropy():
    student, teacher, target = _random(7, batch=3, classes=5)
    out = methods.create("nkd", temperature=2.0, gamma=1.5, w_ce=0.0)(student, teacher, target, 1)
    t_y = torch.softmax(teacher, 1).gather(1, target[:, None])
    s_y = torch.log_softmax(student, 1).gather(1, target[:, None])
    torch.testing.assert_close(out["target"], -(t_y * s_y).mean(), rtol=1e-12, atol=0.0)
    total = 0.0
    for row in range(3):
        keep = [c for c in range(5) if c != target[row]]
        t_hat = torch.softmax(teacher[row, keep] / 2.0, 0)
        log_s_hat = torch.log_softmax(student[row, keep] / 2.0, 0)
        total = total - 1.5 * 4.0 * (t_hat * log_s_hat).sum()
    torch.testing.assert_close(out["non_target"], total / 3, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("name,params", [("ttm", {}), ("wttm", {}), ("nkd", {}), ("wkd_l", {}),
                                          ("wkd_l", {"temperature": 1.0}),
                                          ("nkd", {"temperature": 1.0}),
                                          ("kd", {"standardize": True, "temperature": 1.0}),
                                          ("dkd", {"standardize": True})])
def test_losses_stay_finite_at_extreme_logits(name, params):
    g = torch.Generator().manual_seed(0)
    student = (torch.randn(8, 100, generator=g) * 1e4).requires_grad_()
    teacher = torch.randn(8, 100, generator=g) * 1e4
    target = torch.randint(0, 100, (8,), generator=g)
    method = methods.create(name, num_classes=100, **params)
    if name == "wkd_l":
        method.set_cost(torch.rand(100, 100, generator=g))
    out = method(student, teacher, target, 30)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(student.grad).all()


def test_the_standardize_switch_leaves_older_cell_keys_alone_and_is_no_ablation_switch():
    assert "standardize" not in methods.resolve_params("kd")
    assert methods.resolve_params("kd", standardize=True)["standardize"] is True
    assert methods.switches("cakd") == ["bcd", "scd", "wcd"]
    smoke = load_matrix("smoke", data_hash="fixed")
    kd = next(r for r in smoke.runs if r.method.name == "kd")
    assert kd.method.params == {"temperature": 4.0, "w_ce": 0.1, "w_kd": 0.9}


@pytest.mark.parametrize("name", [*NEW, "mlkd"])
def test_each_method_trains_in_the_smoke_matrix(name, tmp_path):
    from bench.__main__ import main
    from bench.store.trackers import FINISHED, JsonLinesTracker

    args = ["run", "--matrix", "smoke", "--workdir", str(tmp_path), "--tracking", "none",
            "--set", f"methods=[{name}]", "--set", "recipe.epochs=1", "--set",
            "recipe.milestones=[]", "--set", "teacher.recipe.epochs=1", "--seeds", "1",
            "--subset-per-class", "10"]
    assert main(args) == 0
    runs = JsonLinesTracker(tmp_path).search()
    assert [r.status for r in runs if r.tags["role"] == "student"] == [FINISHED]


# mdistiller engine/dot.py DistillationOrientedTrainer, 3 steps of KD (T 4, 0.1 CE + 0.9 KD) on a
# Linear(3, 4) from these values, lr 0.05, momentum 0.9 ± 0.075, weight decay 5e-4, in float64,
# with its trainer's call order (trainer.py DOT.train_iter)
DOT_START = ([[0.2, -0.1, 0.4], [0.0, 0.3, -0.2], [-0.5, 0.1, 0.1], [0.3, 0.3, 0.0]],
             [0.1, -0.1, 0.0, 0.05])
DOT_X = [[1.0, 2.0, -1.0], [0.5, -0.3, 0.8]]
DOT_GOLDEN = (
    [[0.2546802770662052, 0.09066802746387867, 0.2639989233304499],
     [-0.007883479235814977, 0.25446983840289755, -0.16236664391058914],
     [-0.5262482163071709, 0.05799509997233882, 0.11566339981735436],
     [0.2794514184767807, 0.1967870765296256, 0.08266434194715509]],
    [0.1234471256565104, -0.09643814361399888, -0.030406432888600916, 0.05339078771015114],
)


def _dot_run(name: str, steps: int = 3, **params):
    from bench.engine.train import build_optimizer
    from bench.spec import Recipe

    model = torch.nn.Linear(3, 4).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(DOT_START[0]))
        model.bias.copy_(torch.tensor(DOT_START[1]))
    method = methods.create(name, num_classes=4, **params)
    recipe = Recipe(lr=0.05, momentum=0.9, weight_decay=5e-4)
    optimizer = build_optimizer(model, recipe, torch.device("cpu"), method)
    x, teacher = torch.tensor(DOT_X, dtype=torch.float64), torch.tensor(Y_T, dtype=torch.float64)
    for _ in range(steps):
        terms = method(model(x), teacher, torch.tensor(TARGET), 1)
        optimizer.zero_grad(set_to_none=True)
        method.step(terms, optimizer)
    return model, optimizer


def test_kd_dot_follows_mdistillers_distillation_oriented_trainer():
    model, optimizer = _dot_run("kd_dot")
    torch.testing.assert_close(model.weight.detach(), torch.tensor(DOT_GOLDEN[0],
                               dtype=torch.float64), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), torch.tensor(DOT_GOLDEN[1],
                               dtype=torch.float64), rtol=1e-6, atol=1e-12)
    # both momenta are optimizer state, so a checkpoint resumes them
    state = optimizer.state_dict()["state"]
    assert all({"task", "kd"} <= set(s) for s in state.values())


def test_kd_dot_with_no_momentum_gap_is_sgd_on_kds_loss():
    dot, _ = _dot_run("kd_dot", steps=5, delta=0.0)
    sgd, _ = _dot_run("kd", steps=5)
    torch.testing.assert_close(dot.weight, sgd.weight, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(dot.bias, sgd.bias, rtol=1e-12, atol=1e-15)
    apart, _ = _dot_run("kd_dot", steps=5)
    assert not torch.allclose(apart.weight, sgd.weight)


@pytest.mark.parametrize("name", [*NEW, "mlkd"])
def test_each_method_resumes_bitwise(name, tmp_path, monkeypatch):
    from bench.__main__ import main
    from tests.runner_helpers import runs_by_label, same_weights, weights_of, write_tiny

    matrix = str(write_tiny(tmp_path, methods=f"[{name}]"))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main(["run", "--matrix", matrix, "--workdir", str(reference)]) == 0
    monkeypatch.setenv("KDBENCH_FAULT", "enospc:3")  # stops with epoch 2's checkpoint kept
    assert main(["run", "--matrix", matrix, "--workdir", str(killed)]) == 1
    monkeypatch.delenv("KDBENCH_FAULT")
    assert main(["run", "--matrix", matrix, "--workdir", str(killed)]) == 0
    key = ("student", name, "0")
    ours = weights_of(killed, runs_by_label(killed)[key])
    assert same_weights(ours, weights_of(reference, runs_by_label(reference)[key]))


def test_cifar100_methods_lists_its_cells_and_shares_cifar100_fulls():
    from bench.spec import load_matrix as load

    methods_matrix = load("cifar100_methods", data_hash="h")
    full = load("cifar100_full", data_hash="h")
    labels = ["ce", "kd", "dkd", "cakd", "kd+ls", "dkd+ls", "ttm", "wttm", "nkd", "wkd_l", "kd+dot",
              "mlkd"]
    assert list(methods_matrix.method_labels) == labels
    assert len(methods_matrix.runs) == 11 * 11 * 5 + 9 * 5
    shared = {r.cell_key for r in full.runs}
    ours = {
        r.cell_key for r in methods_matrix.runs if r.method.label in ("ce", "kd", "dkd", "cakd")
    }
    assert ours == shared  # trained once, reported by both
    dkd_ls = [r for r in methods_matrix.runs if r.method.label == "dkd+ls" and r.seed == 0]
    assert {(r.teacher.arch, r.student, r.method.params["beta"]) for r in dkd_ls} == {
        (r.teacher.arch, r.student, r.method.params["beta"])
        for r in full.runs if r.method.name == "dkd" and r.seed == 0
    }
    assert all(r.method.params["standardize"] is True for r in dkd_ls)


def test_a_report_of_cifar100_methods_renders_every_method_and_the_published_numbers(tmp_path):
    import copy

    import yaml as pyyaml

    from bench.report import write_report
    from bench.spec import build_matrix
    from bench.spec.matrix import read_matrix_yaml
    from bench.store.trackers import JsonLinesTracker
    from tests.test_report_units import log_finished

    raw = copy.deepcopy(read_matrix_yaml("cifar100_methods")[0])
    raw["pairs"] = [p for p in raw["pairs"] if (p["teacher"], p["student"]) ==
                    ("resnet32x4", "resnet8x4")]
    matrix = build_matrix(raw, "t", data_hash="abc")
    tracker = JsonLinesTracker(tmp_path)
    log_finished(tracker, matrix, lambda run: {
        "last_top1": 74.0 + run.seed * 0.2, "best_top1": 74.9 + run.seed * 0.2,
        "teacher_top1": 79.40})
    (tmp_path / "m.yaml").write_text(pyyaml.safe_dump(raw))
    write_report(matrix, tracker, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    leaderboard = text[text.index("## Leaderboard"):].split("\n## ")[0]
    for label in matrix.method_labels:
        assert f" {label} " in leaderboard.splitlines()[4], label
    published = text[text.index("## Published numbers"):].split("\n## ")[0]
    rows = {line.split("|")[3].strip(): line for line in published.splitlines()
            if line.startswith("| resnet32x4 ")}
    assert "75.12" in rows["kd+dot"] and f"{75.3 - 75.12:+.2f} (ours best" in rows["kd+dot"]
    assert "76.17" in rows["ttm"] and "not comparable: ttm's published parameters are not" in (
        rows["ttm"])
    assert "76.62" in rows["kd+ls"]  # the LS paper's KD+LS: kd with standardize on
    assert "not published" in rows["nkd"]


def test_dot_refuses_a_distillation_momentum_of_one_or_more():
    from bench.engine.train import build_optimizer
    from bench.spec import Recipe

    method = methods.create("kd_dot", num_classes=4)
    with pytest.raises(methods.MethodError, match="must stay below 1"):
        build_optimizer(torch.nn.Linear(3, 4), Recipe(momentum=0.95), torch.device("cpu"), method)


def test_dot_decays_a_distillation_only_parameter_from_its_second_step_as_mdistiller():
    """mdistiller's dot(): a parameter that only the distillation loss reaches starts its buffer
    from the raw gradient, and adds weight decay from the second step on."""
    from methods.dot import DistillationOrientedTrainer

    lr, decay, mu_task, mu_kd = 0.1, 0.5, 0.8, 0.9
    shared = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    kd_only = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = DistillationOrientedTrainer([shared, kd_only], lr=lr, momentum_task=mu_task,
                                            momentum_kd=mu_kd, weight_decay=decay)
    grads = [torch.tensor([0.3], dtype=torch.float64), torch.tensor([-0.2], dtype=torch.float64)]
    expected, buffer = 2.0, None
    for g in grads:
        shared.grad, kd_only.grad = torch.ones_like(shared), g.clone()
        optimizer.keep_distillation_gradients()
        kd_only.grad = None
        optimizer.step()
        if buffer is None:
            buffer = g.item()
        else:
            buffer = (mu_task + mu_kd) / 2 * buffer + g.item() + decay * expected
        expected -= lr * buffer
    assert kd_only.item() == pytest.approx(expected, rel=1e-12)
