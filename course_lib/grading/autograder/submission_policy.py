"""What a student may hand in for one assignment (:class:`Policy`), read from its release, and the
refusals the inbox reader reports (:mod:`~course_lib.grading.autograder.inbox` states the policy)."""
from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MiB = 1 << 20
CHUNK = 1 << 16
#: A data file a released notebook declares: ``WEIGHTS = "a2_model.pt"`` or ``WEIGHTS = Path("x.pt")``.
DECLARED = re.compile(r"""^WEIGHTS\s*=\s*(?:Path\()?\s*["']([^"'/\\]+)["']""", re.M)
#: What reading a broken file or archive may raise (a bad CRC, a truncated gzip, an unknown compression):
#: the file is refused, never the batch.
UNREADABLE = (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError, NotImplementedError,
              RuntimeError, ValueError)
NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """One entry or member is not collected; the message says why."""


@dataclass(frozen=True)
class Policy:
    """What a student may hand in for one assignment, and how much."""

    notebooks: tuple[str, ...]
    data_files: frozenset[str] = frozenset()
    max_file: int = 50 * MiB
    max_student: int = 200 * MiB
    max_members: int = 200

    def check_name(self, name: str) -> None:
        if name.startswith("."):
            raise Refused("a hidden file, ignored")
        if name == "timestamp.txt":
            raise Refused("the time of submission is not taken from the student")
        if name not in self.notebooks and name not in self.data_files:
            expected = ", ".join(sorted({*self.notebooks, *self.data_files}))
            raise Refused(f"not a file this assignment expects ({expected})")

    def target_of(self, name: str) -> str:
        """The name ``name`` is collected under: itself, or, in a one-notebook assignment, the
        released notebook's name for another notebook whose name starts like it (a browser's
        ``a1_convolution (1).ipynb``, Jupyter's ``-Copy1``): an honest student's renamed copy counts."""
        stem = self.notebooks[0][:-len(".ipynb")] if len(self.notebooks) == 1 else None
        if stem and name.startswith(stem) and name.endswith(".ipynb"):
            return self.notebooks[0]
        self.check_name(name)
        return name


@dataclass
class Report:
    """``collected``: students whose submission was copied; ``refused``: student (or entry) -> why not;
    ``problems``: ``(student, name, reason)`` of every file that was left out; ``submitted_at``:
    student -> time of submission (ISO 8601, UTC), where the LMS download's file names give it."""

    collected: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    submitted_at: dict[str, str] = field(default_factory=dict)


def expected_files(release: Path, max_file: int = 50 * MiB, max_student: int = 200 * MiB) -> Policy:
    """The :class:`Policy` of the released assignment in ``release`` (``assignments/NAME/``)."""
    import nbformat

    notebooks = sorted(release.glob("*.ipynb"))
    data = set()
    for path in notebooks:
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code":
                for name in DECLARED.findall(cell.source):
                    data |= {name, str(PurePosixPath(name).with_suffix(".safetensors"))}
    return Policy(tuple(p.name for p in notebooks), frozenset(data - {"timestamp.txt"}), max_file, max_student)


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    for test, words in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")):
        if test(mode):
            return words
    return "not a regular file"
