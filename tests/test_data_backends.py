"""The three CIFAR backends (torch, memory, ffcv) are interchangeable: same samples, same batches.

Same (seed, epoch) -> the same order and the same augmented pixels in every backend; every train
sample once per epoch; another seed or epoch -> another order; subsets keep the first N per class.
"""

import pytest
import torch

from bench.data.datasets import cifar, synthetic
from bench.data.loaders import make_loaders
from bench.spec import DataSpec

BACKENDS = ("torch", "memory", "ffcv")
CONFIG = {"classes": 4, "train_per_class": 25, "test_per_class": 7, "seed": 3}
BATCH = 16  # 100 train samples: 6 full batches and one of 4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("data-backends")


def loaders(workdir, backend, *, seed=0, device="cpu", **data):
    spec = DataSpec(dataset="synthetic", backend=backend, synthetic=CONFIG, **data)
    return make_loaders(spec, batch_size=BATCH, seed=seed, device=device, workdir=workdir)


def batches(loader, epoch):
    return [(x.cpu().clone(), y.cpu().clone(), i.cpu().clone()) for x, y, i in loader.epoch(epoch)]


def assert_same_batches(a, b, what):
    assert len(a) == len(b), what
    for k, ((xa, ya, ia), (xb, yb, ib)) in enumerate(zip(a, b, strict=True)):
        assert xa.dtype == xb.dtype == torch.float32, what
        assert ya.dtype == yb.dtype == torch.int64 and ia.dtype == ib.dtype == torch.int64, what
        assert torch.equal(ia, ib), f"{what}: batch {k} indices"
        assert torch.equal(ya, yb), f"{what}: batch {k} labels"
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-6, msg=f"{what}: batch {k} images")


def file_arrays(workdir, split):
    root = workdir / "data" / synthetic.SyntheticConfig(**CONFIG).folder_name()
    return cifar.read_split(root, split, verify=False)


def first_per_class(labels, n):
    """File positions of the first n samples of each class (written out, not the library's)."""
    seen, keep = {}, []
    for position, label in enumerate(labels.tolist()):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= n:
            keep.append(position)
    return keep


def test_without_augmentation_backends_give_the_same_batches(workdir):
    per_backend = {b: loaders(workdir, b, augment=False) for b in BACKENDS}
    for backend in ("memory", "ffcv"):
        for split in ("test", "train"):
            reference = batches(getattr(per_backend["torch"], split), 0)
            got = batches(getattr(per_backend[backend], split), 0)
            assert_same_batches(reference, got, f"{backend} {split}")
    test = file_arrays(workdir, "test")
    images = torch.cat([x for x, _, _ in batches(per_backend["ffcv"].test, 0)])
    labels = torch.cat([y for _, y, _ in batches(per_backend["ffcv"].test, 0)])
    assert labels.tolist() == test.labels.tolist()
    mean = torch.tensor([0.5071, 0.4867, 0.4408]).view(1, 3, 1, 1)
    std = torch.tensor([0.2675, 0.2565, 0.2761]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(test.images).float() / 255 - mean) / std
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)


def test_with_augmentation_backends_give_the_same_batches(workdir):
    per_backend = {b: loaders(workdir, b, seed=5) for b in BACKENDS}
    for epoch in (0, 1, 7):
        reference = batches(per_backend["torch"].train, epoch)
        for backend in ("memory", "ffcv"):
            got = batches(per_backend[backend].train, epoch)
            assert_same_batches(reference, got, f"{backend} epoch {epoch}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_train_sample_is_seen_once_per_epoch(workdir, backend):
    train = loaders(workdir, backend, seed=2).train
    labels = file_arrays(workdir, "train").labels
    assert train.num_samples == len(labels) == 100 and len(train) == 7
    for epoch in range(3):
        got = batches(train, epoch)
        assert len(got) == len(train)
        assert [len(y) for _, y, _ in got] == [BATCH] * 6 + [4]
        indices = torch.cat([i for _, _, i in got])
        assert sorted(indices.tolist()) == list(range(100))
        assert torch.cat([y for _, y, _ in got]).tolist() == labels[indices.numpy()].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_depends_on_seed_and_epoch_only(workdir, backend):
    def order(seed, epoch):
        train = loaders(workdir, backend, seed=seed).train
        return torch.cat([i for _, _, i in batches(train, epoch)])

    first = batches(loaders(workdir, backend, seed=4).train, 1)
    again = batches(loaders(workdir, backend, seed=4).train, 1)
    assert_same_batches(first, again, f"{backend} rebuilt with the same seed")
    base = order(4, 1)
    assert not torch.equal(base, order(5, 1)), "another seed must give another order"
    assert not torch.equal(base, order(4, 2)), "another epoch must give another order"
    assert not torch.equal(base, torch.arange(100)), "the train order must be shuffled"


@pytest.mark.parametrize("backend", BACKENDS)
def test_subset_keeps_the_first_n_per_class(workdir, backend):
    train_file, test_file = file_arrays(workdir, "train"), file_arrays(workdir, "test")
    first3 = first_per_class(train_file.labels, 3)
    subset = loaders(workdir, backend, augment=False, subset_per_class=3)
    train = batches(subset.train, 0)
    indices = torch.cat([i for _, _, i in train])
    assert sorted(indices.tolist()) == first3 and len(first3) == 12
    assert sum(len(y) for _, y, _ in batches(subset.test, 0)) == len(test_file.labels) == 28

    both = loaders(workdir, backend, augment=False, subset_per_class=3, test_subset_per_class=2)
    test = batches(both.test, 0)
    kept = first_per_class(test_file.labels, 2)
    assert torch.cat([y for _, y, _ in test]).tolist() == test_file.labels[kept].tolist()
    mean = torch.tensor([0.5071, 0.4867, 0.4408]).view(1, 3, 1, 1)
    std = torch.tensor([0.2675, 0.2565, 0.2761]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(test_file.images[kept]).float() / 255 - mean) / std
    torch.testing.assert_close(torch.cat([x for x, _, _ in test]), expected, rtol=0, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["memory", "ffcv"])
def test_cuda_backends_match_the_cpu_torch_backend(workdir, backend):
    reference = loaders(workdir, "torch", seed=9)
    on_cuda = loaders(workdir, backend, seed=9, device="cuda")
    first = next(iter(on_cuda.train.epoch(0)))
    assert all(t.device.type == "cuda" for t in first)
    for epoch in (0, 1):
        assert_same_batches(
            batches(reference.train, epoch), batches(on_cuda.train, epoch), f"{backend} cuda"
        )
    assert_same_batches(batches(reference.test, 0), batches(on_cuda.test, 0), f"{backend} test")
