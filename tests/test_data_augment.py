"""The shared CIFAR augmentation, checked from the pixels every backend emits.

Probe images encode their own coordinates (R = 1 + row, G = 1 + column) and their index in the file
(B), all above 0, so a zero in an emitted image can only be padding. From each emitted sample the
test recovers which image it is and the crop offset and flip that were applied, rebuilds it with a
plain numpy pad -> crop -> flip, and compares pixel for pixel: nothing is taken from what the
backend reports about itself.
"""

import numpy as np
import pytest
import torch

from bench.data import augment
from bench.data.datasets import cifar, synthetic
from bench.data.loaders import make_loaders
from bench.spec import DataSpec

CLASSES = 10
TRAIN_PER_CLASS = 100
TEST_PER_CLASS = 10
MEAN = np.array([0.5071, 0.4867, 0.4408]).reshape(1, 3, 1, 1)  # CIFAR-100, as published
STD = np.array([0.2675, 0.2565, 0.2761]).reshape(1, 3, 1, 1)

# Critical values of the chi-square distribution at alpha = 0.001, from
# scipy.stats.chi2.ppf(0.999, dof) (scipy 1.17.1); the dof = 1 value 10.828 is also the one in
# the NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.4.
CHI2_CRITICAL_0001 = {1: 10.828, 80: 124.839, 161: 222.191}


def probe_images(n: int) -> np.ndarray:
    """uint8 [n, 3, 32, 32]: R = 1 + row, G = 1 + col, B = the image index in two base-250 digits
    (low digit where row + col is even, high digit where it is odd), every value >= 1."""
    rows = np.arange(32).reshape(32, 1)
    cols = np.arange(32).reshape(1, 32)
    images = np.empty((n, 3, 32, 32), dtype=np.uint8)
    images[:, 0] = 1 + rows
    images[:, 1] = 1 + cols
    ids = np.arange(n).reshape(n, 1, 1)
    even = ((rows + cols) % 2 == 0)[None]
    images[:, 2] = np.where(even, 1 + ids % 250, 1 + ids // 250)
    return images


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    base = tmp_path_factory.mktemp("probe")
    root = base / "data"
    n_train, n_test = CLASSES * TRAIN_PER_CLASS, CLASSES * TEST_PER_CLASS
    train = probe_images(n_train)
    test = probe_images(n_test)
    cifar.write_split(root, "train", train, np.arange(n_train) % CLASSES)
    cifar.write_split(root, "test", test, np.arange(n_test) % CLASSES)
    cifar.write_meta(root, [f"class_{c:03d}" for c in range(CLASSES)])
    (root / synthetic.MARKER).write_text("{}")  # a prepared synthetic folder: never regenerated
    return {"root": root, "workdir": base / "work", "train": train, "test": test}


def probe_loaders(probe, backend: str, seed: int, augment_on: bool = True):
    data = DataSpec(
        dataset="synthetic",
        root=str(probe["root"]),
        backend=backend,
        augment=augment_on,
        synthetic={"classes": CLASSES},
    )
    return make_loaders(data, batch_size=128, seed=seed, device="cpu", workdir=probe["workdir"])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Undo the normalization; the result must be integers (checked), returned as uint8."""
    pixels = (images.double().numpy() * STD + MEAN) * 255.0
    assert np.abs(pixels - np.rint(pixels)).max() < 1e-3
    return np.rint(pixels).astype(np.uint8)


def recover(pixels: np.ndarray):
    """(image id, dx, dy, flip) of each emitted sample, read from its central pixels.

    Output pixel (i, j) comes from padded pixel (dy + i, dx + j') with j' = j, or 31 - j when
    flipped; source row = padded row - 4. The centre (rows/cols 15..16) is never padding.
    """
    r = pixels[:, 0].astype(np.int64) - 1
    c = pixels[:, 1].astype(np.int64) - 1
    flip = c[:, 16, 17] < c[:, 16, 16]
    dy = r[:, 16, 16] - 16 + 4
    dx = np.where(flip, c[:, 16, 16] + 16 - 27, c[:, 16, 16] - 16 + 4)
    b = pixels[:, 2].astype(np.int64) - 1
    even = (r[:, 16, 16] + c[:, 16, 16]) % 2 == 0
    low = np.where(even, b[:, 16, 16], b[:, 16, 17])
    high = np.where(even, b[:, 16, 17], b[:, 16, 16])
    return low + 250 * high, dx, dy, flip


def reference(source: np.ndarray, dx: int, dy: int, flip: bool) -> np.ndarray:
    """Plain pad 4 with zeros -> crop 32x32 at (dx, dy) -> horizontal flip, on uint8 [3, 32, 32]."""
    padded = np.pad(source, ((0, 0), (4, 4), (4, 4)))
    out = padded[:, dy : dy + 32, dx : dx + 32]
    return out[:, :, ::-1] if flip else out


def test_probe_decoding_round_trips():
    """The decoder itself: an unaugmented probe image decodes to its own id and offset (4, 4)."""
    images = probe_images(600)
    ids, dx, dy, flip = recover(images)
    assert ids.tolist() == list(range(600))
    assert set(dx.tolist()) == {4} and set(dy.tolist()) == {4} and not flip.any()


@pytest.mark.parametrize("backend", ["torch", "memory", "ffcv"])
def test_every_backend_applies_the_shared_augmentation_exactly(probe, backend):
    seed = 11
    loaders = probe_loaders(probe, backend, seed)
    padding_value = (0.0 - MEAN.reshape(3)) / STD.reshape(3)
    seen_offsets = set()
    for epoch in (0, 3):
        for images, _, reported in loaders.train.epoch(epoch):
            pixels = to_uint8(images)
            ids, dx, dy, flip = recover(pixels)
            assert torch.equal(reported, torch.from_numpy(ids))
            want_dx, want_dy, want_flip = augment.augment_params(seed, epoch, torch.from_numpy(ids))
            assert np.array_equal(dx, want_dx.numpy()) and np.array_equal(dy, want_dy.numpy())
            assert np.array_equal(flip, want_flip.numpy())
            for k in range(len(ids)):
                expected = reference(probe["train"][ids[k]], dx[k], dy[k], flip[k])
                assert np.array_equal(pixels[k], expected), (backend, epoch, int(ids[k]))
                padded = expected == 0  # probe pixels are >= 1: zeros are padding
                values = images[k].double().numpy()
                for ch in range(3):
                    np.testing.assert_allclose(
                        values[ch][padded[ch]], padding_value[ch], rtol=0, atol=1e-6
                    )
            seen_offsets.update(zip(dx.tolist(), dy.tolist(), strict=True))
    assert len(seen_offsets) == 81


@pytest.mark.parametrize("backend", ["torch", "memory", "ffcv"])
def test_test_images_are_only_normalized(probe, backend):
    loaders = probe_loaders(probe, backend, seed=0)
    pixels = np.concatenate([to_uint8(images) for images, _, _ in loaders.test.epoch(0)])
    assert np.array_equal(pixels, probe["test"])


def test_offsets_cover_all_positions_and_flips_are_balanced(probe):
    """Chi-square goodness of fit of the emitted (dx, dy, flip) to uniform over 9 x 9 x 2."""
    counts = np.zeros((9, 9, 2), dtype=np.int64)
    for seed in (0, 1):
        loaders = probe_loaders(probe, "memory", seed)
        for epoch in range(5):
            for images, _, _ in loaders.train.epoch(epoch):
                _, dx, dy, flip = recover(to_uint8(images))
                np.add.at(counts, (dx, dy, flip.astype(np.int64)), 1)
    total = counts.sum()
    assert total == 2 * 5 * CLASSES * TRAIN_PER_CLASS

    def chi2(observed: np.ndarray) -> float:
        expected = total / observed.size
        return float(((observed - expected) ** 2 / expected).sum())

    positions = counts.sum(axis=2)
    flips = counts.sum(axis=(0, 1))
    assert (positions > 0).all(), "some crop offset never occurs"
    assert chi2(counts) < CHI2_CRITICAL_0001[161]
    assert chi2(positions) < CHI2_CRITICAL_0001[80]
    assert chi2(flips) < CHI2_CRITICAL_0001[1]


def test_a_biased_augmentation_fails_the_chi_square():
    """The statistic above has power: offsets drawn from 8 of the 9 positions are rejected."""
    rng = np.random.default_rng(0)
    n = 10_000
    dx, dy = rng.integers(0, 8, n), rng.integers(0, 9, n)
    counts = np.zeros((9, 9), dtype=np.int64)
    np.add.at(counts, (dx, dy), 1)
    expected = n / 81
    assert ((counts - expected) ** 2 / expected).sum() > CHI2_CRITICAL_0001[80]
