"""Matrices expand to the cells their recipes list (mdistiller's CIFAR-100 pairs); malformed
matrices fail at load with one line."""

from collections import Counter

import pytest
import yaml

from bench.data.backends.base import backend_aliases, backends
from bench.data.datasets.base import datasets
from bench.errors import SpecError
from bench.spec import DataSpec, build_matrix, load_matrix

DATASETS, BACKENDS, BACKEND_ALIASES = datasets(), tuple(backends()), backend_aliases()

HASH = "0123456789abcdef"  # stands in for the dataset content hash: no data is read here

DKD_BETA = {
    ("resnet56", "resnet20"): 2,
    ("resnet110", "resnet32"): 2,
    ("resnet32x4", "resnet8x4"): 8,
    ("wrn_40_2", "wrn_16_2"): 6,
    ("wrn_40_2", "wrn_40_1"): 6,
    ("vgg13", "vgg8"): 6,
    ("resnet32x4", "ShuffleV1"): 8,
    ("resnet32x4", "ShuffleV2"): 8,
    ("wrn_40_2", "ShuffleV1"): 8,
    ("vgg13", "MobileNetV2"): 6,
    ("ResNet50", "MobileNetV2"): 8,
}
MOBILE = {"ShuffleV1", "ShuffleV2", "MobileNetV2"}


def test_cifar100_full_expands_to_the_dkd_table():
    matrix = load_matrix("cifar100_full", data_hash=HASH)
    assert set(matrix.pairs) == set(DKD_BETA)
    distilled = [r for r in matrix.runs if r.method.name != "ce"]
    alone = [r for r in matrix.runs if r.method.name == "ce"]
    assert len(distilled) == 11 * 3 * 5
    assert len(alone) == 9 * 5  # ShuffleV1 and MobileNetV2 are trained alone once per seed
    assert Counter(r.student for r in alone)["ShuffleV1"] == 5
    for run in alone:
        assert run.teacher is None
        if run.student in ("ShuffleV1", "MobileNetV2"):
            assert len(run.pairs) == 2
    for run in distilled:
        pair = (run.teacher.arch, run.student)
        if run.method.name == "dkd":
            assert run.method.params["beta"] == DKD_BETA[pair]
        if run.method.name == "cakd":
            assert run.method.params["w_wcd"] == DKD_BETA[pair]
        assert run.recipe.lr == (0.01 if run.student in MOBILE else 0.05)
        assert run.recipe.epochs == 240 and run.recipe.milestones == (150, 180, 210)
        assert run.recipe.weight_decay == 5e-4 and run.recipe.batch_size == 64
    assert sorted({r.seed for r in matrix.runs}) == [0, 1, 2, 3, 4]
    assert len({r.cell_key for r in matrix.runs}) == len(matrix.runs)


def test_ce_key_does_not_depend_on_the_teacher():
    matrix = load_matrix("cifar100_full", data_hash=HASH)
    kd = [r for r in matrix.runs if r.method.name == "kd" and r.seed == 0]
    assert len({r.teacher.arch for r in kd}) > 1
    ce = [r for r in matrix.runs if r.method.name == "ce" and r.student == "MobileNetV2"]
    assert len({r.cell_key for r in ce}) == 5


def test_ablation_has_the_listed_cells():
    matrix = load_matrix("cifar100_ablation", data_hash=HASH)
    labels = Counter(r.method.label for r in matrix.runs)
    assert len(labels) == 2 + 7 + 4 + 1
    assert all(n == 3 * 5 for n in labels.values())
    switches = {
        (r.method.params["bcd"], r.method.params["scd"], r.method.params["wcd"])
        for r in matrix.runs
        if r.method.name == "cakd"
        and r.method.params["k"] == 5
        and r.method.params["weights"] == "given"
    }
    assert len(switches) == 7 and (False, False, False) not in switches
    ks = {r.method.params["k"] for r in matrix.runs if r.method.label.startswith("cakd_k")}
    assert ks == {0, 1, 2, 10}
    natural = [r for r in matrix.runs if r.method.label == "cakd_natural"]
    assert all(
        r.method.params["weights"] == "natural"
        and r.method.params["warmup"] == 1
        and r.method.params["w_ce"] == 0.1
        and r.method.params["w_kd"] == 0.9
        for r in natural
    )
    wcd = {
        (r.teacher.arch, r.method.params["w_wcd"]) for r in matrix.runs if r.method.name == "cakd"
    }
    assert wcd == {("resnet32x4", 8), ("wrn_40_2", 6), ("vgg13", 6)}


def test_imagenet_full_uses_prefixed_models():
    matrix = load_matrix("imagenet_full", data_hash=HASH)
    for run in matrix.runs:
        assert ":" in run.student and (run.teacher is None or ":" in run.teacher.arch)
        assert run.recipe.batch_size == 512 and run.recipe.lr == 0.2
        if run.method.name in ("kd", "dkd", "cakd"):
            assert run.method.params["temperature"] == 1
    betas = {
        (r.teacher.arch, r.method.params["beta"]) for r in matrix.runs if r.method.name == "dkd"
    }
    assert betas == {("torchvision:resnet34", 0.5), ("torchvision:resnet50", 2.0)}


def test_keys_are_canonical_and_overrides_change_them():
    a = load_matrix("smoke", data_hash=HASH)
    b = load_matrix("smoke", data_hash=HASH, overrides=["recipe.lr=5e-2"])
    assert [r.cell_key for r in a.runs] == [r.cell_key for r in b.runs]
    c = load_matrix("smoke", data_hash=HASH, overrides=["recipe.epochs=2"])
    assert {r.cell_key for r in a.runs}.isdisjoint({r.cell_key for r in c.runs})
    d = load_matrix("smoke", data_hash=HASH, seeds=3)
    assert len(d.runs) == 4 * 3
    e = load_matrix("smoke", data_hash="another")
    assert {r.cell_key for r in a.runs}.isdisjoint({r.cell_key for r in e.runs})
    cuda = load_matrix("smoke", data_hash=HASH, device="cuda")
    assert [r.cell_key for r in a.runs] == [r.cell_key for r in cuda.runs]
    assert {r.run_key for r in a.runs}.isdisjoint({r.run_key for r in cuda.runs})


BASE = {
    "name": "t",
    "data": {"dataset": "synthetic"},
    "pairs": [{"teacher": "resnet20", "student": "resnet8"}],
    "methods": ["kd", "cakd"],
    "seeds": 1,
}


def _with(path, value):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


def test_two_bad_names_in_one_section_are_reported_one_at_a_time():
    with pytest.raises(SpecError) as refused:
        build_matrix(_with(("data",), {"dataset": "cifar", "backend": "dali"}), "test.yaml")
    from bench.spec import dataset_names

    names = ", ".join(repr(name) for name in dataset_names())  # a plugin's too, where loaded
    assert names.startswith("'cifar100', 'cifar10', 'synthetic', 'imagenet'")
    assert str(refused.value) == f"data.dataset='cifar' must be one of {names}"


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("pairs",), KeyError, "pairs"),
        (("name",), KeyError, "name"),
        (("seeds",), "three", "seeds"),
        (("recipe",), {"epochs": -3}, "epochs"),
        (("recipe",), {"epochs": "many"}, "recipe.epochs"),
        (("recipe",), {"lr": "fast"}, "recipe.lr"),
        (("recipe",), {"colour": 1}, "colour"),
        (("pairs",), [{"teacher": "resnet20", "student": "resnet8"}] * 2, "duplicate pair"),
        (("pairs",), [{"teacher": "resnet20", "student": "resnet9"}], "resnet9"),
        (("pairs",), [{"teacher": "resnet20"}], "student"),
        (("methods",), ["kd", "nosuch"], "nosuch"),
        (("methods",), [{"name": "cakd", "params": {"k": 9}}], "k"),
        (("methods",), [{"name": "kd", "params": {"T": 4}}], "T"),
        (("pairs",), [{"teacher": "resnet20", "student": "torchvision:resnet18"}],
         "takes 64 px and up"),
        (("data",), {"dataset": "mnist"}, "mnist"),
        (("data",), {"dataset": "synthetic", "backend": "dali"}, "dali"),
    ],
)
def test_malformed_matrix_fails_with_one_line(path, value, expected):
    raw = _with(path, value)
    with pytest.raises(SpecError) as info:
        build_matrix(raw, "test.yaml", data_hash=HASH)
    message = str(info.value)
    assert "\n" not in message and expected in message


def test_cifar_model_on_imagenet_is_rejected():
    raw = _with(("data",), {"dataset": "imagenet"})
    with pytest.raises(SpecError, match="takes 32 to 64 px"):
        build_matrix(raw, "test.yaml", data_hash=HASH)


def test_expanding_a_matrix_builds_no_method(monkeypatch):
    """Parameters are validated once by the registry; no method object is made to check them."""
    import methods

    built = []
    original = methods.Method.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(methods.Method, "__init__", counting_init)
    matrix = load_matrix("cifar100_ablation", data_hash=HASH)
    assert len(matrix.runs) > 100 and built == []


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("recipe",), {"lr": "5e-4"}, "recipe.lr='5e-4' must be a finite number"),
        (("recipe",), {"epochs": 2.5}, "recipe.epochs=2.5 must be an integer"),
        (("recipe",), {"momentum": 1.0}, "recipe.momentum=1.0 must be < 1"),
        (("recipe",), {"nesterov": "yes"}, "recipe.nesterov='yes' must be true or false"),
        (("data",), {"dataset": "synthetic", "augment": 1},
         "data.augment=1 must be one of true, false, 'crop_flip', 'rrc_flip'"),
        (("data",), {"dataset": "synthetic", "synthetic": {"classes": 1}}, "classes=1 must be"),
        (("data",), {"dataset": "synthetic", "backend": "dali"}, "must be one of 'torch'"),
        (("method_params",), {"kdd": {"temperature": 4}}, "method_params.kdd"),
        (("pairs",), [{"teacher": "resnet20", "student": "resnet8", "params": {"kdd": {}}}],
         "pairs[0].params.kdd"),
        (("teacher",), {"checkpoints": {"resnet21": "t.pth"}}, "teacher.checkpoints.resnet21"),
        (("baseline",), "fitnet", "baseline: 'fitnet'"),
        (("methods",), [{"name": "kd", "grid": {"temperature": [1, "x"]}}], "temperature='x'"),
    ],
)
def test_one_validator_names_field_value_and_expectation(path, value, expected):
    with pytest.raises(SpecError) as info:
        build_matrix(_with(path, value), "test.yaml", data_hash=HASH)
    message = str(info.value)
    assert "\n" not in message and expected in message, message


def test_yaml_reads_exponent_floats_as_numbers(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: m\ndata: {dataset: synthetic}\nrecipe: {lr: 5e-2, weight_decay: 1e-4}\n"
        "pairs: [{teacher: resnet20, student: resnet8}]\nmethods: [kd]\n"
    )
    matrix = load_matrix(str(path), data_hash=HASH)
    assert matrix.recipe.lr == 0.05 and matrix.recipe.weight_decay == 1e-4


PAIR_AT = {32: ("resnet20", "resnet8"), 64: ("torchvision:resnet34", "torchvision:resnet18"),
           224: ("torchvision:resnet34", "torchvision:resnet18")}


@pytest.mark.parametrize(
    "dataset,backend",
    [(d, b) for d in DATASETS for b in (*BACKENDS, "gpu")],
)
def test_every_dataset_backend_pair_is_served_or_refused_in_one_line_at_spec_time(dataset, backend):
    raw = _with(("data",), {"dataset": dataset, "backend": backend})
    teacher, student = PAIR_AT[DATASETS[dataset].resolution]
    raw["pairs"] = [{"teacher": teacher, "student": student}]
    served = BACKEND_ALIASES.get(backend, backend) in DataSpec(dataset=dataset).backends
    if served:
        assert build_matrix(raw, "test.yaml", data_hash=HASH).data.backend in BACKENDS
        return
    with pytest.raises(SpecError) as refused:
        build_matrix(raw, "test.yaml", data_hash=HASH)
    line = str(refused.value)
    assert "\n" not in line
    assert f"cannot serve {dataset} at 224 px; valid for it: torch, ffcv" in line
    assert "'memory' (also called 'gpu')" in line


def test_the_default_backend_is_the_fastest_exact_one():
    assert DataSpec(dataset="cifar100").backend == "memory"
    assert DataSpec(dataset="synthetic").backend == "memory"
    assert DataSpec(dataset="imagenet").backend == "torch"  # ffcv re-encodes the pixels
    assert DataSpec(dataset="cifar100", backend="gpu").backend == "memory"  # the old name
    smoke = load_matrix("smoke", data_hash=HASH)
    assert smoke.data.backend == "memory" and load_matrix("cifar100_full").data.backend == "memory"


def test_a_method_needing_two_views_is_refused_at_spec_time_where_none_is_served():
    import dataclasses

    import methods
    from methods.registry import _METHODS

    @dataclasses.dataclass(frozen=True)
    class NoParams:
        def validate(self, num_classes):
            pass

    @methods.register_method("two_view_test", needs=methods.Needs(two_views=True))
    class TwoViews(methods.Method):
        Params = NoParams

    try:
        raw = _with(("methods",), ["two_view_test"])
        build_matrix(raw, "test.yaml", data_hash=HASH)  # CIFAR-size arrays: served
        raw["data"] = {"dataset": "imagefolder", "resolution": 224}
        raw["pairs"] = [{"teacher": "torchvision:resnet34", "student": "torchvision:resnet18"}]
        with pytest.raises(SpecError, match="method 'two_view_test': data: a two-view method "
                           "needs a strong view"):
            build_matrix(raw, "test.yaml", data_hash=HASH)
    finally:
        _METHODS.pop("two_view_test")


def test_backends_that_change_pixels_never_share_a_cell():
    """ImageNet through FFCV is re-encoded (JPEG, longest side 512, quality 90, OpenCV): another
    cell than the PIL pipeline. The CIFAR backends give the same batches, so they share cells."""
    torch_cells = load_matrix("imagenet_full", data_hash=HASH, overrides=["data.backend=torch"])
    ffcv_cells = load_matrix("imagenet_full", data_hash=HASH, overrides=["data.backend=ffcv"])
    assert {r.cell_key for r in torch_cells.runs}.isdisjoint(r.cell_key for r in ffcv_cells.runs)
    assert ffcv_cells.runs[0].cell()["data"]["pixels"] == "ffcv-jpeg-r512-q90-opencv"
    cifar = [
        {r.cell_key for r in load_matrix("cifar100_full", data_hash=HASH,
                                         overrides=[f"data.backend={b}"]).runs}
        for b in ("torch", "memory", "ffcv")
    ]
    assert cifar[0] == cifar[1] == cifar[2]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_dataset_states_facts_the_spec_can_serve(name):
    """What a dataset declares is enough to validate a matrix on it: its default backend
    serves it, its default spec passes the data checks, and its classes are known or counted."""
    from bench.spec import check_data

    facts = DATASETS[name]
    data = DataSpec(dataset=name)
    assert data.backend == facts.default_backend or data.prepared_arrays
    assert data.backend in data.backends and set(data.backends) <= set(backends())
    assert data.augment_family in facts.augment_families and data.resolution == facts.resolution
    assert facts.kind in ("arrays", "folder") and facts.title
    check_data(data)
    assert data.num_classes is None or data.num_classes >= 2
