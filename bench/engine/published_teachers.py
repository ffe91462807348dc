"""The authors' released teacher files: fetched on first use, their sha256 recorded and checked.

A CIFAR release is mdistiller's `cifar_teachers.tar` (one `ckpt_epoch_240.pth` per architecture);
its URL may be a mirror (`teacher.url`: https://, http:// or file://). Only the named member of
an archive is read, never extracted wholesale. ImageNet's released teachers are torchvision's
IMAGENET1K_V1 files, fetched by `model_zoo.load_pretrained`.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch

import model_zoo
from bench.errors import BenchError
from bench.files import atomic_path, atomic_write, atomic_write_text
from bench.locks import file_lock
from bench.references import TeacherRelease, teacher_release
from bench.spec import Matrix, TeacherSpec

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class TeacherUnavailable(BenchError):
    """A released teacher that cannot be fetched, or whose file is not the recorded one (exit 2:
    nothing was run)."""

    exit_code = 2


def release_folder(workdir: Path, release: TeacherRelease) -> Path:
    return Path(workdir) / "teachers" / "published" / release.name


def _release_for(dataset: str, arch: str) -> TeacherRelease:
    release = teacher_release(dataset)
    if release is None or release.url is None:
        raise TeacherUnavailable(
            f"teacher {arch}: no released teachers are recorded for dataset '{dataset}' "
            "(bench/references/teachers.yaml); use teacher.source: trained"
        )
    return release


def _download(url: str, target: Path, arch: str, by_hand: Path) -> None:
    try:
        with atomic_path(target) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), progress=True)
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TeacherUnavailable(
            f"teacher {arch}: cannot fetch {url} ({reason}); download it where the network "
            f"allows and put it at {by_hand}"
        ) from None


def _extract(archive: Path, member: str, target: Path, arch: str) -> None:
    try:
        with tarfile.open(archive) as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise TeacherUnavailable(
                    f"teacher {arch}: {archive.name} has no member {member}"
                ) from None
            source = tar.extractfile(info) if info.isfile() else None
            if source is None:
                raise TeacherUnavailable(
                    f"teacher {arch}: {member} in {archive.name} is not a file"
                )
            with source, atomic_write(target, "wb") as handle:
                shutil.copyfileobj(source, handle)
    except (tarfile.TarError, EOFError) as exc:
        raise TeacherUnavailable(
            f"teacher {arch}: {archive} is not a readable tar archive ({exc}); delete it to "
            "fetch it again"
        ) from None


def _check_sha(folder: Path, release: TeacherRelease, arch: str, member: str, path: Path) -> str:
    """The file's sha256, which must be the release's pinned one, else the one recorded at the
    first fetch (recorded now if this is the first)."""
    sha = model_zoo.sha256_file(path)
    record_file = folder / "sha256.json"
    try:
        recorded = json.loads(record_file.read_text()) if record_file.is_file() else {}
    except ValueError:
        recorded = {}
    expected = release.sha256.get(arch) or recorded.get(member)
    if expected and expected != sha:
        raise TeacherUnavailable(
            f"teacher {arch}: {path} has sha256 {sha[:16]}…, not the "
            f"{'released' if release.sha256.get(arch) else 'recorded'} {expected[:16]}…; "
            "delete it to fetch it again"
        )
    if recorded.get(member) != sha:
        atomic_write_text(record_file, json.dumps(recorded | {member: sha}, indent=1))
    return sha


def fetch_published_teacher(teacher: TeacherSpec, dataset: str, workdir: Path) -> Path:
    """The local file of a released teacher, fetched (once, under a lock) if it is not there."""
    release = _release_for(dataset, teacher.arch)
    folder = release_folder(workdir, release)
    member = release.member_for(teacher.arch)
    url = teacher.url or release.url
    archive_name = Path(urlparse(url).path).name or "release"
    is_archive = archive_name.endswith(ARCHIVE_SUFFIXES)
    target = folder / (member if is_archive else archive_name)
    with file_lock(folder / ".fetch.lock"):
        if not target.is_file():
            if is_archive:
                archive = folder / archive_name
                if not archive.is_file():
                    _download(url, archive, teacher.arch, archive)
                _extract(archive, member, target, teacher.arch)
            else:
                _download(url, target, teacher.arch, target)
        _check_sha(folder, release, teacher.arch, member, target)
    return target


def fetch_published_teachers(matrix: Matrix, workdir: Path, runs=None) -> dict[str, Path]:
    """Every released teacher the given runs (default: all) need, fetched before anything runs."""
    files = {}
    for run in runs if runs is not None else matrix.runs:
        teacher = run.teacher
        if teacher is not None and teacher.published and teacher.arch not in files:
            files[teacher.arch] = fetch_published_teacher(teacher, run.data.dataset, workdir)
    return files
