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
    sha256: dict = field(default_factory=dict)  # arch -> expected sha256 (None: unknown)

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


def published_teacher_top1(dataset: str, arch: str) -> tuple[float, str] | None:
    """(published top-1, its source) of a teacher, or None where no table gives one."""
    row = PublishedTable(load_published()).teacher_top1(dataset, arch)
    return None if row is None else (row.top1, row.source)
