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
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch

import model_zoo
from bench.errors import BenchError
from bench.files import atomic_path, atomic_write, atomic_write_text
from bench.locks import file_lock
from bench.references import (
    TeacherRelease,
    published_teacher_top1,
    teacher_release,
    teacher_releases,
)
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


def check_pin(release: TeacherRelease, arch: str, sha: str, path: Path | str) -> None:
    """A file whose sha256 is not the release's pin (a whole hash or its first digits) is
    refused."""
    pin = release.pin(arch)
    if pin and not sha.startswith(pin):
        raise TeacherUnavailable(
            f"teacher {arch}: {path} has sha256 {sha[:16]}…, not the pinned {pin[:16]}… of "
            f"{release.name} ({release.sha256_source or 'teachers.yaml'}); delete it to fetch "
            "the released file again"
        )


def _recorded(folder: Path) -> dict[str, str]:
    record_file = folder / "sha256.json"
    try:
        return json.loads(record_file.read_text()) if record_file.is_file() else {}
    except ValueError:
        return {}


def _check_sha(folder: Path, release: TeacherRelease, arch: str, member: str, path: Path) -> str:
    """The file's sha256, which must be the release's pinned one, and the one recorded at the
    first fetch (recorded now if this is the first)."""
    sha = model_zoo.sha256_file(path)
    check_pin(release, arch, sha, path)
    recorded = _recorded(folder)
    expected = recorded.get(member)
    if expected and expected != sha:
        raise TeacherUnavailable(
            f"teacher {arch}: {path} has sha256 {sha[:16]}…, not the recorded {expected[:16]}…; "
            "delete it to fetch it again"
        )
    if expected != sha:
        atomic_write_text(folder / "sha256.json", json.dumps(recorded | {member: sha}, indent=1))
    return sha


def recorded_sha256(teacher: TeacherSpec, dataset: str, workdir: Path) -> str | None:
    """The sha256 of a released teacher's file as recorded when it was fetched here, or None."""
    release = teacher_release(dataset)
    if release is None or release.url is None:
        return None
    return _recorded(release_folder(workdir, release)).get(release.member_for(teacher.arch))


def bind_published_teachers(matrix: Matrix, workdir: Path, fetch: bool = True) -> Matrix:
    """The matrix with each released teacher file's sha256 in its students' keys: the recorded
    one, or (with `fetch`) the file's after fetching it."""
    hashes = {}
    for teacher in matrix.teachers:
        if not teacher.published or teacher.bound:
            continue
        sha = recorded_sha256(teacher, matrix.data.dataset, workdir)
        if sha is None and fetch:
            fetch_published_teacher(teacher, matrix.data.dataset, workdir)
            sha = recorded_sha256(teacher, matrix.data.dataset, workdir)
        if sha is not None:
            hashes[teacher.arch] = sha
    return matrix.bind_teacher_files(hashes) if hashes else matrix


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
        sha = _check_sha(folder, release, teacher.arch, member, target)
    if teacher.checkpoint_sha256 and teacher.checkpoint_sha256 != sha:
        raise TeacherUnavailable(
            f"teacher {teacher.arch}: {target} has sha256 {sha[:16]}…, not the "
            f"{teacher.checkpoint_sha256[:16]}… this matrix was keyed with; rerun the command"
        )
    return target


def fetch_published_teachers(matrix: Matrix, workdir: Path, runs=None) -> dict[str, Path]:
    """Every released teacher the given runs (default: all) need, fetched before anything runs."""
    files = {}
    for run in runs if runs is not None else matrix.runs:
        teacher = run.teacher
        if teacher is not None and teacher.published and teacher.arch not in files:
            files[teacher.arch] = fetch_published_teacher(teacher, run.data.dataset, workdir)
    return files


@dataclass(frozen=True)
class PublishedTeacher:
    """One released teacher file: its pin, and what this work directory holds of it."""

    dataset: str
    arch: str
    release: str
    pin: str | None
    pin_source: str
    published_top1: str
    held: str  # the local file and its sha256, or "not fetched"


def _held(release: TeacherRelease, arch: str, workdir: Path) -> str:
    if release.torchvision_weights:
        url = model_zoo.torchvision_weights_url(arch)
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if not path.is_file():
            return f"not fetched (torch.hub cache: {path})"
        return f"{path} (sha256 {model_zoo.sha256_file(path)[:16]}…)"
    folder = release_folder(workdir, release)
    member = release.member_for(arch)
    sha = _recorded(folder).get(member)
    if sha is None or not (folder / member).is_file():
        return "not fetched"
    return f"{folder / member} (sha256 {sha[:16]}…)"


def published_teachers(workdir: Path) -> list[PublishedTeacher]:
    """Every released teacher of teachers.yaml with its pin and the local file."""
    out = []
    for release in teacher_releases():
        for arch in release.sha256 or {}:
            top1 = published_teacher_top1(release.dataset, arch)
            out.append(PublishedTeacher(
                release.dataset, arch, release.name, release.pin(arch), release.sha256_source,
                f"{top1[0]:.2f}" if top1 else "—", _held(release, arch, Path(workdir)),
            ))
    return out
