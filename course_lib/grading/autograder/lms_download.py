"""An LMS download as the instructor gets it: one ``.zip`` of every upload (Moodle's and Canvas's
"download all submissions"), unpacked safely into a private folder that
:func:`~course_lib.grading.autograder.lms.collect` then reads exactly as an unpacked download.

    python -m course_lib.grading autograde A --submissions download.zip --lms   (or --pattern RE)

The LMS builds this archive from the students' uploads, each a plain file (a student's own archive
stays one file in it, read later member by member by :mod:`~course_lib.grading.autograder.archives`).
So a download that holds anything else was not made by an LMS as it stands, and the whole download is
refused with one error naming the member, before anything is collected:

* a link, a device or a named pipe (a zip member's Unix mode), an encrypted member;
* a path that is absolute, has a drive letter or ``..`` (:func:`archives.leaves_folder`), or a name twice;
* more than :data:`MAX_MEMBERS` members, a member over the student's limit (``--max-submission-mb``: no
  upload can usefully be bigger), more than :data:`MAX_TOTAL` bytes in all or than the temporary
  folder's free space (declared sizes checked first; :mod:`zipfile` unpacks no more than a member
  declares and fails on its CRC when it lied: a zip bomb's trick);
* an unreadable archive or member (not a zip, a bad CRC, a truncated file).

Hidden members (``.DS_Store``, ``folder/._x``) are skipped. The download's layout is kept to one folder
deep (``NAME`` or ``FOLDER/NAME``, what :mod:`~course_lib.grading.autograder.lms` reads); a deeper
member's folder is made, empty, so that the collection reports it as it does for an unpacked download.
The folder is created by :func:`tempfile.mkdtemp` (mode 0700, in ``$TMPDIR``) and removed after.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from course_lib.grading.autograder.archives import leaves_folder
from course_lib.grading.autograder.submission_policy import CHUNK, UNREADABLE, Policy, kind

#: Members a download may hold: a class of 1000 students, 10 files each.
MAX_MEMBERS = 10_000
#: Bytes a download may unpack to, in all.
MAX_TOTAL = 32 << 30
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class BadDownload(ValueError):
    """The download is refused whole; the message names the member and why."""


@contextlib.contextmanager
def unpacked(download: Path, policy: Policy, max_total: int = MAX_TOTAL):
    """``download`` itself when it is a folder; for a ``.zip``, a private folder holding its members,
    removed on leaving. :class:`BadDownload` (a ``ValueError``) when the zip is refused."""
    if download.is_dir():
        yield download
        return
    if not download.exists():
        raise BadDownload(f"--submissions {download}: no such folder or file")
    if not download.is_file() or download.suffix.lower() != ".zip":
        raise BadDownload(f"--submissions {download}: an LMS download is a folder or a .zip")
    folder = Path(tempfile.mkdtemp(prefix="course-lms-download-"))
    try:
        unpack(download, folder, policy.max_student, max_total)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unpack(download: Path, folder: Path, max_member: int, max_total: int = MAX_TOTAL) -> None:
    """Write the members of the zip ``download`` into the empty ``folder``, or raise :class:`BadDownload`."""
    try:
        with zipfile.ZipFile(download) as archive:
            members = archive.infolist()
            _check_sizes(download, members, folder, max_member, max_total)
            for info in members:
                try:
                    _unpack_member(archive, info, folder)
                except OSError as err:  # writing: a name both a file and a folder, too long, a full disk
                    raise BadDownload(f"member {info.filename!r} cannot be unpacked ({err.strerror or err})")
    except BadDownload as err:
        raise BadDownload(f"{download}: {err}; nothing collected") from None
    except UNREADABLE as err:
        raise BadDownload(f"{download}: not a readable zip ({type(err).__name__}: {err}); nothing collected") from None


def _check_sizes(download: Path, members: list[zipfile.ZipInfo], folder: Path, max_member: int,
                 max_total: int) -> None:
    """The declared sizes, before anything is written (the bytes are counted again while unpacking)."""
    if len(members) > MAX_MEMBERS:
        raise BadDownload(f"{len(members)} members, more than {MAX_MEMBERS}")
    for info in members:
        if info.file_size > max_member:
            raise BadDownload(f"member {info.filename!r}: {info.file_size} bytes, over the limit of {max_member} "
                              "(--max-submission-mb)")
    total = sum(info.file_size for info in members)
    if total > max_total:
        raise BadDownload(f"unpacks to {total} bytes, more than the limit of {max_total}")
    free = shutil.disk_usage(folder).free
    if total > free:
        raise BadDownload(f"unpacks to {total} bytes, more than the {free} free in {folder.parent} (set TMPDIR)")


def _unpack_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path) -> None:
    """One member: a folder made, or a regular file copied (never more bytes than it declares:
    :class:`zipfile.ZipExtFile` reads no further and then fails on the CRC of a member that lied)."""
    name = info.filename
    if leaves_folder(name):
        raise BadDownload(f"member {name!r}: an absolute path or one that leaves the download")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BadDownload(f"member {name!r}: {kind(mode)}; an LMS download holds only files and folders")
    if info.flag_bits & 0x1:
        raise BadDownload(f"member {name!r}: encrypted")
    if not parts or any(p.startswith(".") for p in parts):
        return  # hidden (``.DS_Store``, ``__MACOSX/._x``): the collection would skip it too
    if info.is_dir() or len(parts) > 2:
        for depth in range(1, min(len(parts), 2) + 1):  # deeper ones are reported by the collection
            (folder / Path(*parts[:depth])).mkdir(mode=0o700, exist_ok=True)
        return
    if len(parts) == 2:
        (folder / parts[0]).mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(folder / Path(*parts), _WRITE, 0o600)
    except FileExistsError:
        raise BadDownload(f"member {name!r}: a second member of that name") from None
    with os.fdopen(fd, "wb") as out, archive.open(info) as source:
        shutil.copyfileobj(source, out, CHUNK)  # zipfile stops at the declared size, then checks the CRC
