"""Archives in the inbox (``STUDENT.zip``, ``.tar``, ``.tar.gz``, ``.tgz``), read member by member:
nothing is extracted but the accepted files, never a link, a device, an absolute or ``..`` path, never
more bytes than the limits (:mod:`~course_lib.grading.autograder.inbox` states the policy)."""
from __future__ import annotations

import gzip
import re
import stat
import tarfile
import zipfile
from typing import Protocol

from course_lib.grading.autograder.submission_policy import MiB, UNREADABLE, Policy, Refused, kind


class Intake(Protocol):
    """What receives a student's files (:class:`course_lib.grading.autograder.inbox.Intake`)."""

    student: str
    policy: Policy

    def refuse(self, name: str, reason: str) -> None: ...

    def offer(self, name: str, declared: int, opener, target: str | None = None, shown: str | None = None) -> None: ...


def leaves_folder(path: str) -> bool:
    """Whether an archive member's path is absolute, has a drive letter or ``..`` (``/`` or ``\\``):
    unpacked as it is, it would land outside the folder it is unpacked in."""
    return path.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", path)) \
        or ".." in path.replace("\\", "/").split("/")


def member_name(intake: Intake, path: str, is_dir: bool) -> str | None:
    """The file name an archive member stands for, or ``None`` (refused, or the student's folder)."""
    if leaves_folder(path):
        intake.refuse(path, "an absolute path or one that leaves the student's folder")
        return None
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
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
