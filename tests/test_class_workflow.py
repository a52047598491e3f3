"""The instructor's class-scale workflow (issue 15): an LMS download, a roster, a due date and late
penalties, a run killed in the middle and resumed, one student regraded, the LMS export.

The fast tests check each piece on small inputs against numbers worked out by hand; the slow one
grades an LMS download of 30 entries of assignment 1 (the bank's honest and wrong notebooks, late
ones, a corrupt one, an earlier attempt, a link) with the instructor's command, kills it with SIGKILL
after some submissions finished, resumes it, and checks every score, penalty and status.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import ROOT, zip_bytes
from submission_bank import ASSIGNMENT as A1, EXPECTED, FULL, submission

from course_lib.grading.autograder import cli, gradebook, lateness, lms, roster
from course_lib.grading.autograder.results import GRADED, Store

UTC = timezone.utc


# -- late penalties ------------------------------------------------------------------------------

def test_late_penalty_rules_by_hand():
    day = 86400
    rate = lateness.parse_policy("10%/day", "30%", 7)
    assert rate.penalty(20, 40, 0) == 0  # on time
    assert rate.penalty(20, 40, 1) == 4  # one second late is one started day: 10% of 40 points
    assert rate.penalty(20, 40, 2 * day) == 8
    assert rate.penalty(20, 40, 2 * day + 1) == 12  # three started days, capped at 30%
    assert rate.penalty(20, 40, 6 * day) == 12
    assert rate.penalty(3, 40, 2 * day) == 3  # never below 0
    assert rate.penalty(20, 40, 7 * day + 1) == 20  # past the cutoff: nothing left
    assert lateness.parse_policy("zero").penalty(15, 40, 1) == 15
    assert lateness.parse_policy("none").penalty(15, 40, 30 * day) == 0
    assert lateness.parse_policy("5%/hour").penalty(10, 40, 90 * 60) == 4  # two started hours
    assert [lateness.late_days(s) for s in (0, 1, day, day + 1)] == [0, 1, 1, 2]
    for spec, cap in (("10%", "100%"), ("ten%/day", "100%"), ("10%/day", "150%")):
        with pytest.raises(ValueError, match="--late"):
            lateness.parse_policy(spec, cap)


# -- LMS file names --------------------------------------------------------------------------------

def test_the_default_pattern_reads_student_time_and_file():
    upload = lms.match(lms.compile_pattern(lms.DEFAULT_PATTERN),
                       (f"alice_12345_LATE_2026-12-01-10-00-00_{A1}.ipynb",), "Europe/Paris")
    assert (upload.student, upload.file_id) == ("alice", f"{A1}.ipynb")
    assert upload.timestamp == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 10:00 in Paris (UTC+1 in December)
    with pytest.raises(ValueError, match="student_id"):
        lms.compile_pattern(r"(?P<file_id>.*)")
    with pytest.raises(ValueError, match="not a regular expression"):
        lms.compile_pattern(r"(?P<student_id>")
    with pytest.raises(ValueError, match="time zone"):
        lms.parse_time("2026-12-01-10-00-00", "Mars/Olympus")


@pytest.fixture
def course(tmp_path) -> Path:
    root = tmp_path / "course"
    shutil.copytree(ROOT / "assignments" / A1, root / "assignments" / A1)
    (root / "secret.txt").write_text("gradebook secret")
    return root


def test_an_lms_download_is_collected_safely(course, tmp_path, capsys):
    released = (ROOT / "assignments" / A1 / f"{A1}.ipynb").read_bytes()
    box = tmp_path / "download"
    box.mkdir()
    (box / f"alice_1_2026-12-01-09-00-00_{A1}.ipynb").write_bytes(b"an earlier attempt")
    (box / f"alice_1_LATE_2026-12-02-13-30-00_{A1} (1).ipynb").write_bytes(released)
    (box / "bob_2_2026-12-01-08-00-00_homework.zip").write_bytes(
        zip_bytes({f"bob/{A1}.ipynb": released, "bob/timestamp.txt": b"2026-11-01 00:00:00"}))
    (box / f"carol_3_2026-12-01-08-00-00_{A1}.ipynb").symlink_to(course / "secret.txt")
    (box / "Dan Smith_4_assignsubmission_file_").mkdir()  # Moodle's folder per student: no match
    (box / "Dan Smith_4_assignsubmission_file_" / f"{A1}.ipynb").write_bytes(released)
    (box / f"erin_5_2026-13-01-08-00-00_{A1}.ipynb").write_bytes(released)  # month 13
    report = cli.collect(course, A1, box, pattern=lms.DEFAULT_PATTERN)
    assert sorted(report.collected) == ["alice", "bob"]
    folder = course / "submitted"
    assert {p.name for p in (folder / "alice" / A1).iterdir()} == {f"{A1}.ipynb", "timestamp.txt"}
    assert (folder / "alice" / A1 / f"{A1}.ipynb").read_bytes() == released  # the latest attempt
    assert (folder / "alice" / A1 / "timestamp.txt").read_text() == "2026-12-02T13:30:00+00:00"
    assert (folder / "bob" / A1 / "timestamp.txt").read_text() == "2026-12-01T08:00:00+00:00"  # not the student's
    assert report.submitted_at == {"alice": "2026-12-02T13:30:00+00:00", "bob": "2026-12-01T08:00:00+00:00"}
    assert not (folder / "carol").exists() and not (folder / "erin").exists()
    assert sorted(report.refused) == ["carol", "erin"] and "a symbolic link" in report.refused["carol"]
    err = capsys.readouterr().err
    assert "an earlier upload; the one of 2026-12-02T13:30:00+00:00 is collected" in err
    assert "timestamp.txt: the time of submission is not taken from the student" in err
    assert "a symbolic link, never followed or read" in err
    assert "does not match --pattern" in err and "is not a time" in err
    assert "gradebook secret" not in "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_a_moodle_layout_with_its_own_pattern(course, tmp_path):
    released = (ROOT / "assignments" / A1 / f"{A1}.ipynb").read_bytes()
    box = tmp_path / "download"
    (box / "alice_17_assignsubmission_file_").mkdir(parents=True)
    (box / "alice_17_assignsubmission_file_" / "my work.ipynb").write_bytes(released)
    (box / "bob_18_assignsubmission_file_").symlink_to(box / "alice_17_assignsubmission_file_")
    pattern = r"^(?P<student_id>[^_/]+)_\d+_assignsubmission_file_/(?P<file_id>[^/]+)$"
    report = cli.collect(course, A1, box, pattern=pattern)
    assert report.collected == ["alice"] and report.submitted_at == {}
    assert {p.name for p in (course / "submitted" / "alice" / A1).iterdir()} == {f"{A1}.ipynb"}


def test_a_roster_is_read_as_nbgrader_imports_it(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("\ufeffid,first_name,last_name,email\nalice,Alice,Ames,a@x.org\nbob,,,\n", encoding="utf-8")
    assert roster.read_roster(path) == [roster.Student("alice", "Alice", "Ames", "a@x.org"), roster.Student("bob")]
    for text, message in (("name\nalice\n", "no 'id'"), ("id\nalice\nalice\n", "listed twice"),
                          ("id\n../etc\n", "line 2: '../etc' is not a valid student id")):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            roster.read_roster(path)


# -- the instructor's mistakes: one clear line, nothing created ------------------------------------

def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_without_a_gradebook_says_so_and_creates_nothing(tmp_path, capsys):
    course = tmp_path / "course"
    course.mkdir()
    (tmp_path / "roster.csv").write_text("id\nalice\n")
    for extra in ([], ["--roster", str(tmp_path / "roster.csv"), "--due", "2026-12-01 12:00"]):
        assert cli.main(["--root", str(course), "export", A1, *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: no gradebook at {course / 'gradebook.db'}: run `release {A1}` and `autograde {A1}` "
                       "first"]
        assert list(course.iterdir()) == []  # no empty gradebook.db, no exports/


def test_export_of_an_assignment_not_in_the_gradebook_changes_nothing(tmp_path, capsys, monkeypatch):
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))  # alembic
    course = tmp_path / "course"
    course.mkdir()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.add_assignment("a2_architectures")
        gb.add_student("alice")
    before = _files(course)
    for extra in ([], ["--due", "2026-12-01 12:00"]):  # --due would have created the assignment, empty
        assert cli.main(["--root", str(course), "export", A1, *extra]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: '{A1}' is not in the gradebook at sqlite:///{course / 'gradebook.db'}: run `release {A1}` and "
            f"`autograde {A1}` first"]
        assert _files(course) == before
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert [a.name for a in gb.assignments] == ["a2_architectures"]
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(ValueError, match="is not an nbgrader gradebook"):
        gradebook.require_assignment(f"sqlite:///{tmp_path / 'empty.db'}", A1)
    assert (tmp_path / "empty.db").read_bytes() == b""


def test_jobs_with_a_scheduler_is_refused_before_anything_runs(course, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "collect", lambda *a, **kw: calls.append("collect"))
    monkeypatch.setattr(cli, "autograde", lambda *a, **kw: calls.append(kw) or {})
    command = ["--root", str(course), "autograde", A1, "--scheduler", "tcp://127.0.0.1:9"]
    assert cli.main([*command, "--jobs", "4", "--submissions", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --jobs 4 counts this machine's submissions at once; "
                                               "with --scheduler the cluster's workers grade")
    assert calls == []
    assert cli.main([*command, "--jobs", "1"]) == 0  # the default, as the Makefile passes it
    assert calls == [dict(calls[0], scheduler="tcp://127.0.0.1:9", jobs=1)]


# -- the whole workflow, for real ------------------------------------------------------------------

DUE = "2026-12-01 12:00"  # UTC
ON_TIME, LATE_1, LATE_4, LATE_10 = ("2026-12-01-10-00-00", "2026-12-02-11-00-00", "2026-12-04-13-00-00",
                                    "2026-12-11-13-00-00")
KINDS = ["correct", "forgot_padding", "off_by_one", "blank", "transposed_kernel", "col2im_width_from_kh"]
SCORE = {kind: sum(EXPECTED[kind].values()) for kind in KINDS}  # the bank's hand-worked scores


def _class() -> dict[str, tuple[str, str]]:
    """``student -> (bank kind, upload time)``: 27 students with one honest or wrong notebook."""
    students = {f"s{i:02d}": (KINDS[i % len(KINDS)], ON_TIME) for i in range(27)}
    students["s01"] = ("forgot_padding", LATE_1)
    students["s06"] = ("correct", LATE_1)
    students["s12"] = ("correct", LATE_4)
    students["s13"] = ("forgot_padding", LATE_10)
    return students


def _write_download(box: Path, students: dict[str, tuple[str, str]]) -> int:
    """The LMS download: 30 entries (27 notebooks, an earlier attempt, a corrupt notebook, a link)."""
    box.mkdir()
    for number, (student, (kind, when)) in enumerate(sorted(students.items())):
        late = "LATE_" if when != ON_TIME else ""
        (box / f"{student}_{9000 + number}_{late}{when}_{A1}.ipynb").write_text(submission(kind), encoding="utf-8")
    (box / f"s02_9002_2026-11-30-10-00-00_{A1}.ipynb").write_text(submission("correct"))  # superseded
    (box / f"broken_9100_{ON_TIME}_{A1}.ipynb").write_text(submission("corrupt_json"))
    (box / f"linky_9101_{ON_TIME}_{A1}.ipynb").symlink_to(ROOT / "solutions" / A1 / f"{A1}.ipynb")
    return len(list(box.iterdir()))


def _command(course: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", A1, *args]


def _run_and_kill(course: Path, args: list[str], after: int) -> int:
    """Start the grading command, SIGKILL it (all its processes) once ``after`` submissions are kept."""
    store = Store(course, A1)
    proc = subprocess.Popen(_command(course, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while proc.poll() is None and len(list(store.folder.glob(f"*/{GRADED}"))) < after:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return len(list(store.folder.glob(f"*/{GRADED}")))


def _kept(course: Path) -> dict[str, tuple]:
    """``student -> (inode, mtime, bytes)`` of each kept result: any regrading rewrites them."""
    out = {}
    for mark in Store(course, A1).folder.glob(f"*/{GRADED}"):
        result = mark.parent / f"{A1}.json"
        out[mark.parent.name] = (result.stat().st_ino, result.stat().st_mtime_ns, result.read_bytes())
    return out


@pytest.mark.slow
def test_an_lms_class_is_graded_resumed_and_exported(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / A1, course / "solutions" / A1)
    cli.release(course, [A1])
    students = _class()
    assert _write_download(tmp_path / "download", students) == 30
    (tmp_path / "roster.csv").write_text("id,first_name,last_name,email\n" + "".join(
        f"{s},First{s},Last{s},{s}@uni.example\n" for s in [*students, "broken", "linky", "zoe"]))
    args = ["--submissions", str(tmp_path / "download"), "--lms", "--roster", str(tmp_path / "roster.csv"),
            "--due", DUE]

    killed_after = _run_and_kill(course, args, after=4)
    assert 4 <= killed_after < 28
    before = _kept(course)
    assert len(before) == killed_after
    result = subprocess.run(_command(course, *args), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert f"{killed_after} submission(s) already graded in an earlier run, not graded again" in result.stderr
    assert re.search(rf"grading {A1}: 100%.*{28 - killed_after}/{28 - killed_after}", result.stderr), "no progress bar"
    after = _kept(course)
    assert {s: after[s] for s in before} == before, "a finished submission was graded again"
    _assert_scores(course, students, result.stdout)
    _assert_export(course, tmp_path, students)
    _assert_one_student_regraded(course, after)


def _assert_scores(course: Path, students: dict, stdout: str) -> None:
    scores = cli.submission_scores(course, A1)
    assert scores == {**{s: SCORE[kind] for s, (kind, _) in students.items()}, "broken": None}
    assert re.search(r"(?m)^broken\s+NOT GRADED", stdout) and re.search(r"(?m)^linky\s+NOT COLLECTED", stdout)
    assert SCORE["correct"] == FULL and SCORE["forgot_padding"] == 10  # the bank's hand-worked numbers


def _assert_export(course: Path, tmp_path: Path, students: dict) -> None:
    out = tmp_path / "export.csv"
    assert cli.main(["--root", str(course), "export", A1, "--output", str(out), "--late-penalty", "10%/day",
                     "--late-cap", "30%", "--late-cutoff", "7"]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {*students, "broken", "linky", "zoe"}
    assert (rows["zoe"]["status"], rows["zoe"]["final_score"]) == ("no submission", "0"), rows["zoe"]
    linky = rows["linky"]["status"]
    assert linky.startswith("no submission (not collected:") and "symbolic link" in linky, rows["linky"]
    broken = rows["broken"]
    assert broken["status"].startswith("NOT GRADED: corrupt notebook") and broken["final_score"] == "", broken
    assert rows["s00"]["first_name"] == "Firsts00" and rows["s00"]["email"] == "s00@uni.example"
    # max 32 (28 autograded + 4 by hand); 10% of 32 = 3.2 points per started day, at most 30% = 9.6.
    # Due 12-01 12:00: s01 and s06 are 23 hours late (1 started day), s12 3 days 1 hour (4 days, capped),
    # s13 10 days 1 hour (11 started days, past the 7-day cutoff: its whole score goes).
    expected = {"s00": (28, 0, 0, 28), "s01": (10, 1, 3.2, 6.8), "s06": (28, 1, 3.2, 24.8),
                "s12": (28, 4, 9.6, 18.4), "s13": (10, 11, 10, 0)}
    for student, (score, days, penalty, final) in expected.items():
        row = rows[student]
        got = (float(row["score"]), int(row["late_days"]), float(row["penalty"]), float(row["final_score"]))
        assert got == pytest.approx((score, days, penalty, final)), (student, row)
        assert row["status"] == "graded" and row["max_score"] == "32" and row["due"] == "2026-12-01 12:00:00 UTC"
    assert rows["s06"]["submitted_at"] == "2026-12-02 11:00:00 UTC"
    on_time = [r for s, r in rows.items() if s in students and students[s][1] == ON_TIME]
    assert len(on_time) == 23 and all(r["late_days"] == "0" and r["penalty"] == "0" for r in on_time)


def _assert_one_student_regraded(course: Path, kept: dict) -> None:
    result = subprocess.run(_command(course, "--student", "s03"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    now = _kept(course)
    assert now["s03"][:2] != kept["s03"][:2], "s03 was not graded again"
    assert {s: v for s, v in now.items() if s != "s03"} == {s: v for s, v in kept.items() if s != "s03"}
    assert re.findall(r"(?m)^(\S+)\s+(\S+)", result.stdout)[-1] == ("s03", f"{SCORE['blank']:g}")
    assert json.loads((Store(course, A1).folder / "s03" / f"{A1}.json").read_text())["tests"]
    assert cli.submission_scores(course, A1)["s00"] == FULL  # the others' gradebook entries are untouched
