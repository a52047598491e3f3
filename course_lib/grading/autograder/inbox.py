"""Reading an inbox of submissions safely: what ``autograde --submissions INBOX`` copies into nbgrader.

The inbox comes from students (an LMS download, archives that restore symbolic links), so nothing
in it is trusted. The policy, entry by entry (an entry is a name directly in the inbox):

* ``STUDENT.ipynb`` (a regular file; one-notebook assignments only) is that student's notebook;
  ``STUDENT/`` (a real folder) or ``STUDENT.zip`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` (a regular file)
  holds that student's files, directly or in one folder named ``STUDENT/`` inside the archive.
* A link is never followed, anywhere: entries and files are examined with ``lstat`` and opened with
  ``O_NOFOLLOW``; an archive's link, hard-link, device or FIFO member is never extracted. Only regular
  files and real folders count; anything else (a link, dangling or not, a named pipe, a socket, a
  device) is refused with a message on stderr naming it, and the other students are still collected.
* A student may hand in only the files the assignment expects (:func:`expected_files`): the released
  notebooks, under their released names (in a one-notebook assignment, a renamed copy that starts
  with the released name, ``a1_convolution (1).ipynb``, counts when the released name is absent),
  and the data files it declares: a ``WEIGHTS = "name"`` (or
  ``WEIGHTS = Path("name")``) line in a released notebook names one (A2, A3, A4, A6 load a trained
  model's weights from it), and the same name with ``.safetensors`` is accepted too
  (:func:`course_lib.grading.weights.load_state_dict_file` reads both). Anything else is refused;
  hidden files (``.name``, e.g. ``.DS_Store``, ``__MACOSX/``) and subfolders are ignored with a message.
* ``timestamp.txt`` is never taken from a student (nbgrader would record it as the time of
  submission); the time of submission comes from the LMS, not from the inbox.
* Every file is bounded (:class:`Policy`: 50 MiB a file, 200 MiB a student, 200 archive members
  by default): a member's declared size is checked first, and the bytes are counted while copying
  (an archive that lies about its sizes, a zip bomb); a compressed tar stops being read once its
  unpacked size exceeds the student's limit. Member paths that are absolute or contain ``..`` are
  refused, and every file is written under a name from the expected set, so nothing is written
  outside ``submitted/STUDENT/ASSIGNMENT/``.
* A student's accepted files replace ``submitted/STUDENT/ASSIGNMENT/`` only when a notebook is among
  them; otherwise the student is reported as refused (:class:`Report`) and left as before.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from course_lib.grading.autograder.archives import read_archive
from course_lib.grading.autograder.student_text import escape
from course_lib.grading.autograder.submission_policy import (ARCHIVE_SUFFIXES, CHUNK, NOFOLLOW, STUDENT_ID,  # noqa: F401
                                                             UNREADABLE, MiB, Policy, Refused, Report,
                                                             expected_files, kind)

def student_of(name: str, mode: int) -> tuple[str, str]:
    """``(student id, form)`` of an inbox entry, form ``notebook``, ``folder`` or ``archive``."""
    if stat.S_ISDIR(mode):
        return name, "folder"
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)], "archive"
    if name.endswith(".ipynb"):
        return name[:-len(".ipynb")], "notebook"
    return name, "other"


class Intake:
    """One student's accepted files, written into a staging folder as they are read."""

    def __init__(self, student: str, policy: Policy, staging: Path, report: Report):
        self.student, self.policy, self.staging, self.report = student, policy, staging, report
        self.total = 0
        self.names: list[str] = []
        self.sizes: dict[str, int] = {}
        self.renamed: dict[str, str] = {}  # target -> the other name a notebook was handed in under

    def refuse(self, name: str, reason: str) -> None:
        print(f"collect: {escape(self.student)}: {escape(name)}: {escape(reason)}; not collected", file=sys.stderr)
        self.report.problems.append((self.student, name, reason))

    def add(self, name: str, declared: int, source, target: str | None = None, renamed: bool = False) -> None:
        """Copy the stream ``source`` (at most ``declared`` bytes expected) in as ``target or name``."""
        target = target or name
        if target in self.names:
            if target == name and target in self.renamed:  # the released name wins over a renamed copy
                self.refuse(self.renamed[target], f"another notebook than {target}, which is collected instead")
                self._drop(target)
            else:
                raise Refused(f"a second file named {target}")
        limit = min(self.policy.max_file, self.policy.max_student - self.total)
        if declared > limit:
            raise Refused(f"{declared} bytes, over the limit of {limit} bytes")
        path = self.staging / target
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            copied = _copy(source, fd, limit)
            if copied > limit:
                raise Refused(f"more than {limit} bytes (its declared size was {declared})")
        except BaseException:
            path.unlink()  # no partial file: a read error (a bad CRC) or too many bytes
            raise
        self.total += copied
        self.names.append(target)
        self.sizes[target] = copied
        if renamed:
            self.renamed[target] = name
            print(f"collect: {self.student}: {name}: collected as {target}", file=sys.stderr)

    def _drop(self, target: str) -> None:
        (self.staging / target).unlink()
        self.names.remove(target)
        self.renamed.pop(target, None)
        self.total -= self.sizes.pop(target)

    def offer(self, name: str, declared: int, opener, target: str | None = None, shown: str | None = None) -> None:
        """Check ``name`` against the policy, then copy ``opener()``'s stream; refusals are reported
        (naming ``shown``, an archive member's path, or ``name``)."""
        try:
            renamed = False
            if target is None:
                target = self.policy.target_of(name)
                renamed = target != name
            with opener() as source:
                self.add(name, declared, source, target, renamed)
        except Refused as why:
            self.refuse(shown or name, str(why))
        except UNREADABLE as err:
            self.refuse(shown or name, f"unreadable ({err})")


def _copy(source, fd: int, limit: int) -> int:
    """Copy ``source`` into the file ``fd`` (closed after), stopping past ``limit``; the bytes read."""
    copied = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(min(CHUNK, limit + 1 - copied)):
            copied += len(chunk)
            if copied > limit:
                break
            out.write(chunk)
    return copied


def open_regular(name: str, dir_fd: int):
    """``name`` in the folder ``dir_fd``, opened without following a link; only a regular file."""
    fd = os.open(name, NOFOLLOW, dir_fd=dir_fd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Refused(f"{kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def read_folder(intake: Intake, dir_fd: int) -> None:
    """The files of a real student folder (``dir_fd``): regular files only, no subfolders."""
    for name in sorted(os.listdir(dir_fd)):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            intake.refuse(name + "/", "a subfolder; only the files directly in the student's folder count")
        elif not stat.S_ISREG(mode):
            intake.refuse(name, f"{kind(mode)}, not a regular file")
        else:
            intake.offer(name, info.st_size, lambda name=name: open_regular(name, dir_fd))


def read_entry(intake: Intake, inbox_fd: int, entry: str, form: str) -> None:
    """Put one inbox entry's accepted files into ``intake``'s staging folder."""
    if form == "folder":
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=inbox_fd)
        try:
            read_folder(intake, fd)
        finally:
            os.close(fd)
        return
    with open_regular(entry, inbox_fd) as stream:
        if form == "archive":
            read_archive(intake, entry, stream)
        elif len(intake.policy.notebooks) != 1:
            raise Refused(f"the assignment has {len(intake.policy.notebooks)} notebooks; hand in a folder")
        else:
            size = os.fstat(stream.fileno()).st_size
            intake.offer(entry, size, lambda: _Borrowed(stream), target=intake.policy.notebooks[0])


class _Borrowed:
    """An open stream lent to :meth:`Intake.offer`, which closes what it opens."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return False


def classify(inbox_fd: int, entry: str, report: Report, seen: set[str]) -> tuple[str, str] | None:
    """``(student, form)`` of an entry that may be collected; otherwise it is reported and ``None``."""
    try:
        mode = os.stat(entry, dir_fd=inbox_fd, follow_symlinks=False).st_mode
    except OSError as err:  # gone since the listing
        mode = 0
        print(f"collect: {entry}: {err}", file=sys.stderr)
    student, form = student_of(entry, mode)
    if entry.startswith("."):
        reason = "a hidden entry, ignored"
    elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        reason = f"{kind(mode)}, never followed or read"
    elif form == "other":
        reason = "not a notebook, a folder or an archive (.zip, .tar, .tar.gz, .tgz)"
    elif not STUDENT_ID.match(student):
        reason = f"{student!r} is not a valid student id"
    elif student in seen:
        reason = f"a second submission of {student}; only the first one (in name order) is collected"
    else:
        seen.add(student)
        return student, form
    print(f"collect: {entry}: {reason}; not collected", file=sys.stderr)
    if not entry.startswith("."):
        report.refused[student if form != "other" and STUDENT_ID.match(student) else entry] = f"{entry}: {reason}"
    return None


def collect(root: Path, assignment: str, inbox: Path, policy: Policy) -> Report:
    """Copy every acceptable submission in ``inbox`` into ``root/submitted/STUDENT/assignment/``."""
    report, seen = Report(), set()
    submitted = root / "submitted"
    submitted.mkdir(exist_ok=True)
    inbox_fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for entry in sorted(os.listdir(inbox_fd)):
            if found := classify(inbox_fd, entry, report, seen):
                intake = new_intake(found[0], policy, submitted, report)
                store(report, intake, lambda: read_entry(intake, inbox_fd, entry, found[1]),
                      submitted / found[0] / assignment, entry)
    finally:
        os.close(inbox_fd)
    return report


def new_intake(student: str, policy: Policy, submitted: Path, report: Report) -> Intake:
    """An :class:`Intake` for ``student`` staging into a fresh hidden folder of ``submitted/``."""
    return Intake(student, policy, Path(tempfile.mkdtemp(prefix=".collect-", dir=submitted)), report)


def store(report: Report, intake: Intake, read, dest: Path, entry: str, extra: dict[str, str] | None = None) -> None:
    """Run ``read()`` (which fills ``intake``), then put the staged files at ``dest`` when a notebook is
    among them; ``extra`` files (name -> text, written by the grader, e.g. ``timestamp.txt``) join them."""
    try:
        read()
        if not set(intake.names) & set(intake.policy.notebooks):
            raise Refused(f"no notebook named {' or '.join(intake.policy.notebooks)} was collected")
        for name, text in (extra or {}).items():
            (intake.staging / name).write_text(text, encoding="utf-8")
        dest.parent.mkdir(exist_ok=True)
        intake.staging.chmod(0o755)  # as a folder nbgrader would make (mkdtemp's is 0700)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)  # a re-collection: the submission is what the inbox holds now
        os.replace(intake.staging, dest)
        report.collected.append(intake.student)
    except (Refused, *UNREADABLE) as why:
        print(f"collect: {entry}: {why}; {intake.student} not collected", file=sys.stderr)
        report.refused[intake.student] = f"{entry}: {why}"
    finally:
        shutil.rmtree(intake.staging, ignore_errors=True)
