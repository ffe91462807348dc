"""The released teacher files (teachers.yaml) and their published accuracies."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import SpecError
from bench.references.files import load_yaml_entries
from bench.references.published import PublishedTable, load_published

DEFAULT_TOLERANCE = 0.15  # top-1 points a re-scored released teacher may differ from its paper


@dataclass(frozen=True)
class TeacherRelease:
    dataset: str
    name: str
    description: str = ""
    url: str | None = None  # an archive (.tar, .tar.gz) holding `member`, or the file itself
    member: str | None = None  # path inside the archive, "{arch}" replaced
    torchvision_weights: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    # arch -> the file's sha256, whole or its first digits, where a source gives it (None: no
    # source does; then the file's own hash keys its students)
    sha256: dict = field(default_factory=dict)
    sha256_source: str = ""

    def pin(self, arch: str) -> str | None:
        return (self.sha256 or {}).get(arch) or None

    def member_for(self, arch: str) -> str:
        return (self.member or "{arch}.pth").format(arch=arch)


def teacher_release(dataset: str) -> TeacherRelease | None:
    raw = load_yaml_entries("teachers.yaml").get(dataset)
    if raw is None:
        return None
    try:
        return TeacherRelease(dataset=dataset, **raw)
    except TypeError as exc:
        raise SpecError(f"teachers.yaml {dataset}: {exc}") from None


def teacher_releases() -> list[TeacherRelease]:
    """Every release of teachers.yaml (and of $KDBENCH_REFERENCES), by dataset."""
    return [r for r in map(teacher_release, load_yaml_entries("teachers.yaml")) if r is not None]


def published_teacher_top1(dataset: str, arch: str) -> tuple[float, str] | None:
    """(published top-1, its source) of a teacher, or None where no table gives one."""
    row = PublishedTable(load_published()).teacher_top1(dataset, arch)
    return None if row is None else (row.top1, row.source)
