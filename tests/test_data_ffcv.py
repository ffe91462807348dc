"""Real .beton files: written once (temp file + rename), reused by content hash, read back exactly;
a damaged file is refused with one line instead of being mapped into memory and read past its end.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bench.data.backends.ffcv_backend import (
    FfcvLoader,
    beton_path,
    check_beton,
    import_ffcv,
    write_cifar_beton,
)
from bench.data.loaders import make_loaders
from bench.data.prepare import prepare
from bench.errors import DataError
from bench.spec import DataSpec

CONFIG = {"classes": 3, "train_per_class": 20, "test_per_class": 5, "seed": 8}


def spec(**fields):
    return DataSpec(dataset="synthetic", backend="ffcv", synthetic=CONFIG, **fields)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ffcv-work")
    files = prepare(spec(), workdir)
    return workdir, files


def read_raw(path, rows, batch_size=16):
    """(uint8 images, labels, index field) of `rows`, in that order, as FFCV decodes them."""
    from ffcv.fields.decoders import SimpleRGBImageDecoder

    index_field = []

    def keep_raw(images, epoch, indices):
        index_field.append(indices.clone())
        return images.clone()

    loader = FfcvLoader(
        path,
        rows,
        decoder=SimpleRGBImageDecoder(),
        transform=keep_raw,
        batch_size=batch_size,
        seed=0,
        train=False,  # position order: the rows as given
    )
    parts = list(loader.epoch(0))
    assert torch.cat([p[2] for p in parts]).tolist() == list(range(len(rows)))
    return (
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        torch.cat(index_field),
    )


def test_a_written_beton_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 100, size=37)
    path = write_cifar_beton((images, labels), tmp_path / "probe.beton", num_workers=1)
    assert path == tmp_path / "probe.beton"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.beton"]  # no temp file left
    assert check_beton(path) == 37
    rows = np.array([5, 0, 36, 7, 7, 12])
    got_images, got_labels, got_index = read_raw(path, rows, batch_size=4)
    assert torch.equal(got_images, torch.from_numpy(images[rows]))
    assert got_labels.tolist() == labels[rows].tolist()
    assert got_index.tolist() == rows.tolist()


def test_files_are_named_by_content_hash_and_reused(prepared):
    workdir, files = prepared
    loaders = make_loaders(spec(), batch_size=8, seed=0, device="cpu", workdir=workdir)
    train, test = (
        beton_path(workdir, loaders.content_hash, "train"),
        beton_path(workdir, loaders.content_hash, "test"),
    )
    assert train.parent == workdir / "ffcv" and train.name == f"{loaders.content_hash}-train.beton"
    assert files[-2:] == [train, test] and all(p.is_file() for p in files)
    assert check_beton(train) == 60 and check_beton(test) == 15
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (train, test)}
    assert prepare(spec(), workdir) == files
    make_loaders(spec(subset_per_class=2), batch_size=8, seed=1, device="cpu", workdir=workdir)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (train, test)} == before
    assert not [p for p in (workdir / "ffcv").iterdir() if ".tmp-" in p.name]


def truncated_copy(prepared, tmp_path, cut):
    """A work directory whose train .beton lost its last `cut` bytes."""
    workdir, files = prepared
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    train = copy / "ffcv" / files[-2].name
    size = train.stat().st_size
    with open(train, "r+b") as f:
        f.truncate(size - cut)
    return copy, train, size


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.001])
def test_a_truncated_beton_is_refused_with_one_line(prepared, tmp_path, keep):
    size = prepared[1][-2].stat().st_size
    cut = size - int(size * keep)
    copy, train, size = truncated_copy(prepared, tmp_path, cut)
    with pytest.raises(DataError) as info:
        check_beton(train)
    message = str(info.value)
    assert "\n" not in message and str(train) in message
    assert f"expected {size} bytes" in message and f"found {size - cut}" in message


def test_opening_a_truncated_beton_does_not_crash_the_process(prepared, tmp_path):
    """The whole make_loaders path, in a child process: a clean DataError, not a signal."""
    copy, train, size = truncated_copy(prepared, tmp_path, 1000)
    script = textwrap.dedent(
        f"""
        from bench.data.loaders import make_loaders
        from bench.errors import DataError
        from bench.spec import DataSpec
        data = DataSpec(dataset="synthetic", backend="ffcv", synthetic={CONFIG!r})
        try:
            loaders = make_loaders(data, batch_size=8, seed=0, device="cpu", workdir={str(copy)!r})
            for _ in loaders.train.epoch(0):
                pass
        except DataError as exc:
            print("DataError:", exc)
            raise SystemExit(3)
        """
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 3, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert str(train) in lines[0] and f"expected {size} bytes" in lines[0]
    assert f"found {size - 1000}" in lines[0]


def test_prepare_rewrites_a_damaged_beton(prepared, tmp_path):
    copy, train, size = truncated_copy(prepared, tmp_path, 4096)
    files = prepare(spec(), copy)
    assert train in files and train.stat().st_size == size
    assert check_beton(train) == 60


def test_a_beton_that_was_never_finished_is_refused(tmp_path):
    import_ffcv()  # a plain `import ffcv` would set torch's threads to 1
    from ffcv.types import HeaderType

    path = tmp_path / "unfinished.beton"
    header = np.zeros(1, dtype=HeaderType)
    header["version"], header["num_fields"], header["num_samples"] = 2, 0, 10
    path.write_bytes(header.tobytes())
    with pytest.raises(DataError, match="never finished"):
        check_beton(path)
    path.write_bytes(b"\0" * 7)
    with pytest.raises(DataError, match="expected at least 24 bytes"):
        check_beton(path)


def test_ffcv_leaves_torch_thread_count_alone(prepared):
    """FFCV sets torch's intra-op threads at import and at every epoch; training keeps its own."""
    workdir, _ = prepared
    script = textwrap.dedent(
        f"""
        import torch
        from bench.data.loaders import make_loaders
        from bench.spec import DataSpec
        data = DataSpec(dataset="synthetic", backend="ffcv", synthetic={CONFIG!r})
        workdir = {str(workdir)!r}
        for threads in (2, 1):
            torch.set_num_threads(threads)
            loaders = make_loaders(data, batch_size=8, seed=0, device="cpu", workdir=workdir)
            for _ in loaders.train.epoch(0):
                pass
            print(threads, torch.get_num_threads())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "2", "1", "1"]
