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
  notebooks, under their released names, and the data files it declares: a ``WEIGHTS = "name"`` (or
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

import gzip
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
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


@dataclass
class Report:
    """``collected``: students whose submission was copied; ``refused``: student (or entry) -> why not;
    ``problems``: ``(student, name, reason)`` of every file that was left out."""

    collected: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


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

    def refuse(self, name: str, reason: str) -> None:
        print(f"collect: {self.student}: {name}: {reason}; not collected", file=sys.stderr)
        self.report.problems.append((self.student, name, reason))

    def add(self, name: str, declared: int, source, target: str | None = None) -> None:
        """Copy the stream ``source`` (at most ``declared`` bytes expected) in as ``target or name``."""
        target = target or name
        if target in self.names:
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

    def offer(self, name: str, declared: int, opener, target: str | None = None, shown: str | None = None) -> None:
        """Check ``name`` against the policy, then copy ``opener()``'s stream; refusals are reported
        (naming ``shown``, an archive member's path, or ``name``)."""
        try:
            if target is None:
                self.policy.check_name(name)
            with opener() as source:
                self.add(name, declared, source, target)
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


def _open_regular(name: str, dir_fd: int):
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
            intake.offer(name, info.st_size, lambda name=name: _open_regular(name, dir_fd))


def member_name(intake: Intake, path: str, is_dir: bool) -> str | None:
    """The file name an archive member stands for, or ``None`` (refused, or the student's folder)."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) or ".." in parts:
        intake.refuse(path, "an absolute path or one that leaves the student's folder")
        return None
    parts = [p for p in parts if p not in ("", ".")]
    if parts and parts[0] == intake.student and (len(parts) > 1 or is_dir):
        parts = parts[1:]  # the archive holds the folder STUDENT/
    if not parts:
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        intake.refuse(path, "a hidden file, ignored")
    elif is_dir or len(parts) > 1:
        intake.refuse(path, "a subfolder; only the files directly in the student's folder count")
    else:
        return parts[0]
    return None


def read_zip(intake: Intake, stream) -> None:
    """The members of a zip archive, read one by one (nothing extracted to disk but accepted files)."""
    with zipfile.ZipFile(stream) as archive:
        for number, info in enumerate(archive.infolist()):
            if number >= intake.policy.max_members:
                intake.refuse(info.filename, f"more than {intake.policy.max_members} members; the rest is ignored")
                return
            name = member_name(intake, info.filename, info.is_dir())
            mode = info.external_attr >> 16
            if name is None:
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                intake.refuse(info.filename, f"{kind(mode)}, not a regular file")
            elif info.flag_bits & 0x1:
                intake.refuse(info.filename, "encrypted")
            else:
                intake.offer(name, info.file_size, lambda info=info: archive.open(info), shown=info.filename)


class Capped:
    """A read-only stream that fails once more than ``limit`` bytes have been read from it."""

    def __init__(self, raw, limit: int):
        self.raw, self.left = raw, limit

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size is not None and size >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise Refused("the archive unpacks to more than the student's limit; the rest is ignored")
        return data


def read_tar(intake: Intake, stream, compressed: bool) -> None:
    """The members of a tar archive, streamed (``r|``): regular files only, never links or devices."""
    raw = gzip.GzipFile(fileobj=stream) if compressed else stream
    capped = Capped(raw, intake.policy.max_student + intake.policy.max_members * 1024 + MiB)
    with tarfile.open(fileobj=capped, mode="r|") as archive:
        for number, member in enumerate(archive):
            if number >= intake.policy.max_members:
                intake.refuse(member.name, f"more than {intake.policy.max_members} members; the rest is ignored")
                return
            name = member_name(intake, member.name, member.isdir())
            if name is None:
                continue
            if not member.isreg():
                what = "a link" if member.issym() or member.islnk() else "a device or named pipe" \
                    if member.ischr() or member.isblk() or member.isfifo() else "not a regular file"
                intake.refuse(member.name, f"{what}, not extracted")
            else:
                intake.offer(name, member.size, lambda member=member: _member(archive, member),
                             shown=member.name)


def _member(archive: tarfile.TarFile, member: tarfile.TarInfo):
    source = archive.extractfile(member)
    if source is None:
        raise Refused("not a regular file")
    return source


def read_archive(intake: Intake, entry: str, stream) -> None:
    """A ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` entry; an unreadable archive keeps what was read."""
    try:
        if entry.lower().endswith(".zip"):
            read_zip(intake, stream)
        else:
            read_tar(intake, stream, compressed=not entry.lower().endswith(".tar"))
    except Refused as why:
        intake.refuse(entry, str(why))
    except UNREADABLE as err:
        intake.refuse(entry, f"an unreadable archive ({err})")


def read_entry(intake: Intake, inbox_fd: int, entry: str, form: str) -> None:
    """Put one inbox entry's accepted files into ``intake``'s staging folder."""
    if form == "folder":
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=inbox_fd)
        try:
            read_folder(intake, fd)
        finally:
            os.close(fd)
        return
    with _open_regular(entry, inbox_fd) as stream:
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
                _collect_one(report, Intake(found[0], policy, Path(tempfile.mkdtemp(prefix=".collect-",
                                                                                    dir=submitted)), report),
                             inbox_fd, entry, found[1], submitted / found[0] / assignment)
    finally:
        os.close(inbox_fd)
    return report


def _collect_one(report: Report, intake: Intake, inbox_fd: int, entry: str, form: str, dest: Path) -> None:
    try:
        read_entry(intake, inbox_fd, entry, form)
        if not set(intake.names) & set(intake.policy.notebooks):
            raise Refused(f"no notebook named {' or '.join(intake.policy.notebooks)} was collected")
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
