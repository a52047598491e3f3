"""Collecting an LMS download: one file per upload, the student and the time in its name.

An LMS ("download all submissions" in Moodle, Canvas, ...) names each uploaded file after the student
and, often, the time of the upload; nbgrader's ``zip_collect`` reads such names with a regular
expression (its ``FileNameCollectorPlugin.named_regexp``). ``autograde --submissions DOWNLOAD
--pattern REGEX`` does the same, with the named groups

* ``student_id`` (required): the student, as on the roster;
* ``file_id`` (required): the file's own name (``a1_convolution.ipynb``, a data file the assignment
  declares, or an archive of the student's files);
* ``timestamp`` (optional): the time of the upload, ``YYYY-MM-DD-HH-MM-SS`` (or ISO 8601), read in
  ``--timezone`` unless it carries an offset. It becomes nbgrader's ``timestamp.txt``, written by the
  grader: the time comes from the LMS's name for the file, never from a file a student wrote.

The pattern is matched against each file's path in the download (``NAME`` or ``FOLDER/NAME``: Moodle
puts each student's files in a folder). :data:`DEFAULT_PATTERN` reads
``alice_12345_LATE_2026-12-01-10-00-00_a1_convolution.ipynb`` as student ``alice``, uploaded on
1 December 2026 at 10:00, file ``a1_convolution.ipynb``. When a student uploaded several times, the
files of the latest upload are collected and the earlier ones are reported.

Every file is read as in :mod:`~course_lib.grading.autograder.inbox`: links, devices and pipes are
refused (never followed), sizes are limited, archives are read member by member, and only the files
the assignment expects are written into ``submitted/STUDENT/ASSIGNMENT/``. The download is a folder
here; the LMS's single ``.zip`` is unpacked into one first (:mod:`~course_lib.grading.autograder.lms_download`).
"""
from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from course_lib.grading.autograder import inbox
from course_lib.grading.autograder.archives import read_archive
from course_lib.grading.autograder.student_text import escape
from course_lib.grading.autograder.submission_policy import (ARCHIVE_SUFFIXES, STUDENT_ID, Policy, Refused, Report,
                                                             kind)

#: ``STUDENT_[ANYTHING_]YYYY-MM-DD-HH-MM-SS_FILE``: nbgrader's documented example layout, which a Moodle or
#: Canvas download renamed by a script (or an export plug-in) follows.
DEFAULT_PATTERN = (r"^(?P<student_id>[A-Za-z0-9][A-Za-z0-9.-]*)_(?:.*_)?"
                   r"(?P<timestamp>\d{4}-\d{2}-\d{2}[-T ]\d{2}[-:]\d{2}[-:]\d{2})_(?P<file_id>[^/]+)$")
TIME_FORMATS = ("%Y-%m-%d-%H-%M-%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H-%M-%S")


@dataclass(frozen=True)
class Upload:
    """One file of the download: whose it is, when it was uploaded, what it is called."""

    path: tuple[str, ...]  # its path in the download, folder by folder
    student: str
    file_id: str
    timestamp: datetime | None


def compile_pattern(text: str) -> re.Pattern:
    """The instructor's pattern, checked: a clear error when it is not one or lacks a required group."""
    try:
        pattern = re.compile(text)
    except re.error as err:
        raise ValueError(f"--pattern {text!r} is not a regular expression: {err}") from None
    missing = {"student_id", "file_id"} - set(pattern.groupindex)
    if missing:
        raise ValueError(f"--pattern {text!r} lacks the named group(s) {', '.join(sorted(missing))}, "
                         "e.g. (?P<student_id>...)")
    return pattern


def parse_time(text: str, zone: str = "UTC") -> datetime:
    """An upload time from a file name, as an aware UTC datetime (naive times are in ``zone``)."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--timezone {zone!r} is not a time zone name (e.g. Europe/Paris, UTC)") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
        for fmt in TIME_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if when is None:
        raise ValueError(f"{text!r} is not a time (YYYY-MM-DD-HH-MM-SS or ISO 8601)")
    return (when if when.tzinfo else when.replace(tzinfo=tz)).astimezone(timezone.utc)


def match(pattern: re.Pattern, path: tuple[str, ...], zone: str) -> Upload:
    """What the pattern reads in one file's path; :class:`Refused` when it does not fit."""
    found = pattern.match("/".join(path))
    if not found:
        raise Refused("its name does not match --pattern")
    student, file_id, stamp = found.group("student_id"), found.group("file_id"), found.groupdict().get("timestamp")
    if not student or not STUDENT_ID.match(student):
        raise Refused(f"{student!r} is not a valid student id")
    if not file_id or "/" in file_id or file_id.startswith("."):
        raise Refused(f"{file_id!r} is not a file name")
    return Upload(path, student, file_id, parse_time(stamp, zone) if stamp else None)


def scan(top_fd: int, pattern: re.Pattern, zone: str, report: Report) -> dict[str, list[Upload]]:
    """``student -> uploads`` of every regular file in the download (at most one folder deep). A student
    whose every entry was refused (a link, a bad time) is reported in ``report.refused``."""
    found: dict[str, list[Upload]] = {}
    refused: dict[str, str] = {}
    for path, mode in _walk(top_fd):
        shown = "/".join(path)
        try:
            upload = match(pattern, path, zone)
            if not stat.S_ISREG(mode):
                raise Refused(f"{kind(mode)}, never followed or read")
        except (Refused, ValueError) as why:
            print(f"collect: {escape(shown)}: {escape(str(why))}; not collected", file=sys.stderr)
            report.problems.append(("?", shown, str(why)))
            named = pattern.match(shown)  # whose it is, by its name alone (a link is never read)
            if named and STUDENT_ID.match(named.group("student_id") or ""):
                refused.setdefault(named.group("student_id"), f"{shown}: {why}")
            continue
        found.setdefault(upload.student, []).append(upload)
    report.refused.update({s: why for s, why in refused.items() if s not in found})
    return found


def _walk(top_fd: int):
    """``(path, st_mode)`` of the entries of the download and of its real folders, links not followed;
    hidden entries are skipped."""
    for entry in sorted(os.listdir(top_fd)):
        if entry.startswith("."):
            continue
        mode = os.stat(entry, dir_fd=top_fd, follow_symlinks=False).st_mode
        if not stat.S_ISDIR(mode):
            yield (entry,), mode
            continue
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top_fd)
        try:
            for name in sorted(os.listdir(fd)):
                if not name.startswith("."):
                    yield (entry, name), os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        finally:
            os.close(fd)


def latest(student: str, uploads: list[Upload], report: Report) -> list[Upload]:
    """The uploads of the student's latest attempt (the latest timestamp); earlier ones are reported."""
    newest = max((u.timestamp for u in uploads if u.timestamp), default=None)
    kept = [u for u in uploads if u.timestamp == newest]
    for upload in uploads:
        if upload not in kept:
            reason = f"an earlier upload; the one of {newest.isoformat()} is collected"
            print(f"collect: {student}: {escape('/'.join(upload.path))}: {reason}", file=sys.stderr)
            report.problems.append((student, "/".join(upload.path), reason))
    return kept


def read_uploads(intake: inbox.Intake, top_fd: int, uploads: list[Upload]) -> None:
    """Offer each upload to ``intake``: an archive member by member, a file under its ``file_id``
    (in a one-notebook assignment, the attempt's only notebook under the released name)."""
    notebooks = [u for u in uploads if u.file_id.endswith(".ipynb")]
    for upload in uploads:
        shown = "/".join(upload.path)
        try:
            with _open(top_fd, upload.path) as stream:
                if upload.file_id.lower().endswith(ARCHIVE_SUFFIXES):
                    read_archive(intake, upload.file_id, stream)
                    continue
                target = _target(intake.policy, upload, len(notebooks))
                size = os.fstat(stream.fileno()).st_size
                intake.offer(upload.file_id, size, lambda: inbox._Borrowed(stream), target=target, shown=shown)
        except Refused as why:
            intake.refuse(shown, str(why))
        except OSError as err:
            intake.refuse(shown, f"unreadable ({err})")


def _target(policy: Policy, upload: Upload, notebooks: int) -> str:
    try:
        return policy.target_of(upload.file_id)
    except Refused:
        if len(policy.notebooks) == 1 and notebooks == 1 and upload.file_id.endswith(".ipynb"):
            return policy.notebooks[0]  # the attempt's only notebook, whatever the student called it
        raise


def _open(top_fd: int, path: tuple[str, ...]):
    """The file at ``path`` in the download, every step opened without following a link."""
    if len(path) == 1:
        return inbox.open_regular(path[0], top_fd)
    fd = os.open(path[0], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top_fd)
    try:
        return inbox.open_regular(path[1], fd)
    finally:
        os.close(fd)


def collect(root: Path, assignment: str, download: Path, policy: Policy, pattern: str = DEFAULT_PATTERN,
            zone: str = "UTC") -> Report:
    """Copy each student's latest upload in ``download`` into ``root/submitted/STUDENT/assignment/``,
    with the upload time as nbgrader's ``timestamp.txt``."""
    regex = compile_pattern(pattern)
    parse_time("2000-01-01-00-00-00", zone)  # a wrong --timezone is the instructor's error, said once
    report = Report()
    submitted = root / "submitted"
    submitted.mkdir(exist_ok=True)
    top_fd = os.open(download, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for student, uploads in sorted(scan(top_fd, regex, zone, report).items()):
            kept = latest(student, uploads, report)
            when = kept[0].timestamp
            intake = inbox.new_intake(student, policy, submitted, report)
            extra = {"timestamp.txt": when.isoformat()} if when else None
            inbox.store(report, intake, lambda: read_uploads(intake, top_fd, kept),
                        submitted / student / assignment, ", ".join("/".join(u.path) for u in kept), extra)
            if when and student in report.collected:
                report.submitted_at[student] = when.isoformat()
    finally:
        os.close(top_fd)
    return report
