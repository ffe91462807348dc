"""Published numbers, the setups they were made with, and the released teachers.

The shipped files live beside this module; a folder named by $KDBENCH_REFERENCES adds its own
`published.csv`, `setups.yaml` and `teachers.yaml` (its entries win), e.g. a lab's own numbers.
"""

from bench.references.comparable import (
    Ours,
    differences,
    teacher_differences,
)
from bench.references.published import (
    Published,
    PublishedTable,
    load_published,
    not_compared_reason,
)
from bench.references.setups import PublishedSetup, load_setups
from bench.references.teachers import (
    TeacherRelease,
    published_teacher_top1,
    teacher_release,
    teacher_releases,
)

__all__ = [
    "Ours",
    "Published",
    "PublishedSetup",
    "PublishedTable",
    "TeacherRelease",
    "differences",
    "load_published",
    "load_setups",
    "not_compared_reason",
    "published_teacher_top1",
    "teacher_differences",
    "teacher_release",
    "teacher_releases",
]
