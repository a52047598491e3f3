"""Collecting an inbox of submissions safely (issue 14, points 1, 2 and the forged timestamp of 8).

``cli.collect`` copies an inbox into nbgrader's ``submitted/``; the inbox is the students', so each
test hands it an attack and checks what landed in ``submitted/`` (and what did not): links to the
solution, to another student, to ``/etc/shadow``, the gradebook or ``/proc/self/environ``; a dangling
link and a named pipe that used to stop the whole batch; a forged ``timestamp.txt``; oversized and
unexpected files; zip and tar archives with link, device, ``..``, absolute and oversized members and
a zip bomb. Most tests call ``collect`` on a small course folder (released notebooks, a solution, a
fake gradebook); the last one runs the instructor's command end to end (nbgrader, unsandboxed so that
it shares no sandbox uid with another test run: it tests the collection, not the jail).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, zip_bytes

from course_lib.grading.autograder import cli, inbox

A1, A2, A6 = "a1_convolution", "a2_architectures", "a6_rnn"
SECRET = b"SQLite format 3\x00 gradebook-secret-31337"
SOLUTION_MARK = "BEGIN HIDDEN TESTS"


@pytest.fixture
def course(tmp_path) -> Path:
    """A course folder with the released notebooks, A1's solution and a (fake) gradebook."""
    root = tmp_path / "course"
    for name in (A1, A2, A6):
        shutil.copytree(ROOT / "assignments" / name, root / "assignments" / name)
    shutil.copytree(ROOT / "solutions" / A1, root / "solutions" / A1)
    (root / "gradebook.db").write_bytes(SECRET)
    return root


@pytest.fixture
def box(tmp_path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


def notebook(assignment: str = A1) -> bytes:
    return (ROOT / "assignments" / assignment / f"{assignment}.ipynb").read_bytes()


def solution(course: Path) -> Path:
    return course / "solutions" / A1 / f"{A1}.ipynb"


def submitted(course: Path, student: str, assignment: str = A1) -> dict[str, bytes]:
    """``name -> content`` of what was collected for ``student`` ({} when nothing)."""
    folder = course / "submitted" / student / assignment
    if not folder.exists():
        return {}
    assert not any(p.is_symlink() for p in folder.iterdir()), "a link was collected"
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def assert_nothing_secret(course: Path) -> None:
    for path in (course / "submitted").rglob("*"):
        assert not path.is_symlink(), f"{path} is a link"
        if path.is_file():
            data = path.read_bytes()
            assert SECRET not in data and SOLUTION_MARK.encode() not in data, f"{path} holds a secret"
            assert b"PATH=" not in data and b"root:" not in data, f"{path} holds the environment or /etc files"
    assert not [p for p in (course / "submitted").iterdir() if p.name.startswith(".")], "a staging folder was left"


def test_honest_input_is_collected_as_before(course, box):
    (box / "alice.ipynb").write_bytes(notebook())
    (box / "bob").mkdir()
    (box / "bob" / f"{A1}.ipynb").write_bytes(notebook())
    report = cli.collect(course, A1, box)
    assert sorted(report.collected) == ["alice", "bob"] and not report.refused and not report.problems
    assert submitted(course, "alice") == submitted(course, "bob") == {f"{A1}.ipynb": notebook()}
    assert stat.S_IMODE((course / "submitted" / "alice" / A1).stat().st_mode) == 0o755


def test_declared_weights_are_collected_with_the_notebook(course, box):
    assert inbox.expected_files(course / "assignments" / A2).data_files == {"a2_model.pt", "a2_model.safetensors"}
    assert inbox.expected_files(course / "assignments" / A1).data_files == frozenset()
    (box / "carol").mkdir()
    (box / "carol" / f"{A2}.ipynb").write_bytes(notebook(A2))
    (box / "carol" / "a2_model.pt").write_bytes(b"weights")
    (box / "dan").mkdir()
    (box / "dan" / f"{A6}.ipynb").write_bytes(notebook(A6))
    (box / "dan" / "rnn_classifier.safetensors").write_bytes(b"tensors")
    assert cli.collect(course, A2, box).collected == ["carol"]  # dan has no A2 notebook
    assert submitted(course, "carol", A2) == {f"{A2}.ipynb": notebook(A2), "a2_model.pt": b"weights"}
    assert cli.collect(course, A6, box).collected == ["dan"]
    assert submitted(course, "dan", A6) == {f"{A6}.ipynb": notebook(A6), "rnn_classifier.safetensors": b"tensors"}


def test_a_renamed_notebook_counts_unless_the_released_name_is_there(course, box, capsys):
    # An honest student's browser saves "a1_convolution (1).ipynb"; Jupyter makes "-Copy1" copies.
    (box / "erin").mkdir()
    (box / "erin" / f"{A1} (1).ipynb").write_bytes(notebook())
    (box / "frank").mkdir()
    (box / "frank" / f"{A1}-Copy1.ipynb").write_bytes(b"an older copy")
    (box / "frank" / f"{A1}.ipynb").write_bytes(notebook())
    (box / "grace.zip").write_bytes(zip_bytes({f"{A1}.ipynb": notebook(), f"{A1}-Copy2.ipynb": b"a copy"}))
    report = cli.collect(course, A1, box)
    assert sorted(report.collected) == ["erin", "frank", "grace"]
    assert submitted(course, "erin") == submitted(course, "frank") == submitted(course, "grace") == {
        f"{A1}.ipynb": notebook()}
    err = capsys.readouterr().err
    assert f"erin: {A1} (1).ipynb: collected as {A1}.ipynb" in err
    assert f"frank: {A1}-Copy1.ipynb: another notebook than {A1}.ipynb, which is collected instead" in err
    assert f"grace: {A1}-Copy2.ipynb: a second file named {A1}.ipynb" in err


def test_a_notebook_linked_to_the_solution_is_refused(course, box, capsys):
    (box / "mallory.ipynb").symlink_to(solution(course))
    (box / "trudy").mkdir()
    (box / "trudy" / f"{A1}.ipynb").symlink_to(solution(course))
    (box / "alice.ipynb").write_bytes(notebook())
    report = cli.collect(course, A1, box)
    assert submitted(course, "mallory") == submitted(course, "trudy") == {}
    assert submitted(course, "alice") == {f"{A1}.ipynb": notebook()}
    assert set(report.refused) == {"mallory", "trudy"} and report.collected == ["alice"]
    err = capsys.readouterr().err
    assert "mallory.ipynb: a symbolic link" in err and f"{A1}.ipynb: a symbolic link" in err
    assert_nothing_secret(course)


def test_a_folder_linked_to_another_student_is_refused(course, box, capsys):
    (box / "alice").mkdir()
    (box / "alice" / f"{A1}.ipynb").write_bytes(notebook())
    (box / "eve").symlink_to(box / "alice")
    report = cli.collect(course, A1, box)
    assert submitted(course, "eve") == {} and submitted(course, "alice") == {f"{A1}.ipynb": notebook()}
    assert report.collected == ["alice"] and "symbolic link" in report.refused["eve"]
    assert "eve: a symbolic link" in capsys.readouterr().err


def test_links_inside_a_folder_are_not_copied(course, box, capsys):
    (box / "dave").mkdir()
    (box / "dave" / f"{A2}.ipynb").write_bytes(notebook(A2))
    (box / "dave" / "a2_model.pt").symlink_to(course / "gradebook.db")  # an expected name: refused as a link
    (box / "dave" / "shadow").symlink_to("/etc/shadow")
    (box / "dave" / "gradebook.db").symlink_to(course / "gradebook.db")
    (box / "dave" / "environ").symlink_to("/proc/self/environ")
    (box / "dave" / "source.ipynb").symlink_to(solution(course))
    report = cli.collect(course, A2, box)
    assert submitted(course, "dave", A2) == {f"{A2}.ipynb": notebook(A2)}
    assert report.collected == ["dave"]
    assert {name for _, name, _ in report.problems} == {"a2_model.pt", "shadow", "gradebook.db", "environ",
                                                        "source.ipynb"}
    err = capsys.readouterr().err
    for name in ("a2_model.pt", "shadow", "gradebook.db", "environ", "source.ipynb"):
        assert f"dave: {name}: a symbolic link" in err
    assert_nothing_secret(course)


def test_a_dangling_link_and_a_named_pipe_do_not_stop_the_batch(course, box, capsys):
    (box / "zed.ipynb").symlink_to(box / "nowhere.ipynb")
    os.mkfifo(box / "pipe.ipynb")
    (box / "frank").mkdir()
    os.mkfifo(box / "frank" / f"{A1}.ipynb")
    (box / "alice.ipynb").write_bytes(notebook())
    (box / "bob").mkdir()
    (box / "bob" / f"{A1}.ipynb").write_bytes(notebook())
    report = cli.collect(course, A1, box)
    assert sorted(report.collected) == ["alice", "bob"]
    assert set(report.refused) == {"zed", "pipe", "frank"}
    err = capsys.readouterr().err
    assert "zed.ipynb: a symbolic link" in err and "pipe.ipynb: a named pipe" in err
    assert f"frank: {A1}.ipynb: a named pipe" in err
    assert submitted(course, "zed") == submitted(course, "pipe") == submitted(course, "frank") == {}


def test_the_students_timestamp_is_ignored(course, box, capsys):
    (box / "alice").mkdir()
    (box / "alice" / f"{A1}.ipynb").write_bytes(notebook())
    (box / "alice" / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")
    stale = course / "submitted" / "alice" / A1
    stale.mkdir(parents=True)
    (stale / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")  # left by an earlier collection
    assert cli.collect(course, A1, box).collected == ["alice"]
    assert submitted(course, "alice") == {f"{A1}.ipynb": notebook()}
    assert "alice: timestamp.txt: the time of submission is not taken from the student" in capsys.readouterr().err


def test_unexpected_hidden_and_nested_files_are_left_out(course, box, capsys):
    (box / "alice").mkdir()
    (box / "alice" / f"{A1}.ipynb").write_bytes(notebook())
    (box / "alice" / "notes.txt").write_text("x")
    (box / "alice" / ".DS_Store").write_text("x")
    (box / "alice" / "sub").mkdir()
    (box / "alice" / "sub" / f"{A1}.ipynb").write_bytes(b"{}")
    (box / "README.txt").write_text("from the LMS")
    report = cli.collect(course, A1, box)
    assert report.collected == ["alice"] and submitted(course, "alice") == {f"{A1}.ipynb": notebook()}
    err = capsys.readouterr().err
    assert "alice: notes.txt: not a file this assignment expects" in err
    assert "alice: .DS_Store: a hidden file" in err and "alice: sub/: a subfolder" in err
    assert "README.txt: not a notebook, a folder or an archive" in err


def test_oversized_files_are_refused(course, box, tmp_path, capsys):
    (box / "alice.ipynb").write_bytes(notebook())
    report = cli.collect(course, A1, box, max_file=len(notebook()) - 1)
    assert report.collected == [] and "no notebook" in report.refused["alice"] and submitted(course, "alice") == {}
    assert f"alice: alice.ipynb: {len(notebook())} bytes, over the limit of {len(notebook()) - 1} bytes" \
        in capsys.readouterr().err
    (tmp_path / "inbox2" / "bob").mkdir(parents=True)
    (tmp_path / "inbox2" / "bob" / f"{A2}.ipynb").write_bytes(notebook(A2))
    (tmp_path / "inbox2" / "bob" / "a2_model.pt").write_bytes(b"\0" * 11)  # over what the student has left
    report = cli.collect(course, A2, tmp_path / "inbox2", max_student=len(notebook(A2)) + 10)
    assert report.collected == ["bob"] and submitted(course, "bob", A2) == {f"{A2}.ipynb": notebook(A2)}
    assert "bob: a2_model.pt: 11 bytes, over the limit of 10 bytes" in capsys.readouterr().err


def test_bytes_are_counted_whatever_the_declared_size(tmp_path):
    policy = inbox.Policy((f"{A1}.ipynb",), max_file=1000)
    intake = inbox.Intake("alice", policy, tmp_path, inbox.Report())
    with pytest.raises(inbox.Refused, match="more than 1000 bytes"):
        intake.add(f"{A1}.ipynb", 10, io.BytesIO(b"x" * 5000))
    assert list(tmp_path.iterdir()) == [] and intake.total == 0


def _zip_member(archive: zipfile.ZipFile, name: str, data: bytes, mode: int = stat.S_IFREG | 0o644) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr, info.compress_type = 3, mode << 16, zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def only_collected(course: Path) -> list[str]:
    """Every path under ``course/submitted`` (files and folders), but the students' folders themselves."""
    paths = [str(p.relative_to(course / "submitted")) for p in (course / "submitted").rglob("*")]
    return sorted(p for p in paths if "/" in p and not p.endswith(("/" + A1, "/" + A2, "/" + A6)))


def _outside(tmp_path: Path) -> set[Path]:
    return {p for p in tmp_path.parent.rglob("*") if "course" not in p.relative_to(tmp_path.parent).parts}


def test_zip_archives_refuse_links_escapes_and_bombs(course, box, tmp_path, capsys):
    with zipfile.ZipFile(box / "alice.zip", "w") as z:
        _zip_member(z, "alice/", b"", stat.S_IFDIR | 0o755)
        _zip_member(z, f"alice/{A2}.ipynb", notebook(A2))
        _zip_member(z, "alice/a2_model.pt", b"/etc/passwd", stat.S_IFLNK | 0o777)
        _zip_member(z, "../escape", b"out")
        _zip_member(z, "/tmp/absolute-escape", b"out")
        _zip_member(z, "a2_model.safetensors", b"\0" * (3 << 20))  # 3 MiB of zeros: a few KiB compressed
        _zip_member(z, "alice/timestamp.txt", b"2000-01-01 00:00:00 UTC")
    assert (box / "alice.zip").stat().st_size < 64 << 10
    before = _outside(tmp_path)
    report = cli.collect(course, A2, box, max_file=1 << 20)
    assert report.collected == ["alice"] and submitted(course, "alice", A2) == {f"{A2}.ipynb": notebook(A2)}
    err = capsys.readouterr().err
    assert "alice: alice/a2_model.pt: a symbolic link" in err
    assert "alice: ../escape: an absolute path or one that leaves" in err
    assert "alice: /tmp/absolute-escape: an absolute path" in err
    assert "alice: a2_model.safetensors: 3145728 bytes, over the limit" in err
    assert _outside(tmp_path) == before and not Path("/tmp/absolute-escape").exists()
    assert only_collected(course) == [f"alice/{A2}/{A2}.ipynb"]


def test_a_zip_that_lies_about_its_sizes_is_refused(course, box, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        _zip_member(z, f"{A2}.ipynb", notebook(A2))
        _zip_member(z, "a2_model.pt", b"\0" * (2 << 20))
    data = bytearray(buffer.getvalue())
    central = data.rindex(b"PK\x01\x02")  # the last member's central entry: declare 100 bytes
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    (box / "bob.zip").write_bytes(bytes(data))
    with zipfile.ZipFile(box / "bob.zip") as z:
        assert z.getinfo("a2_model.pt").file_size == 100
    assert cli.collect(course, A2, box, max_file=1 << 20).collected == ["bob"]
    assert submitted(course, "bob", A2) == {f"{A2}.ipynb": notebook(A2)}
    assert "bob: a2_model.pt: unreadable (Bad CRC-32" in capsys.readouterr().err


def _tar_member(archive: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
                link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz"])
def test_tar_archives_refuse_links_devices_escapes_and_big_members(course, box, tmp_path, suffix, capsys):
    with tarfile.open(box / f"alice{suffix}", "w:gz" if "gz" in suffix else "w") as t:
        _tar_member(t, "alice", tarfile.DIRTYPE)
        _tar_member(t, f"alice/{A2}.ipynb", data=notebook(A2))
        _tar_member(t, "alice/a2_model.pt", tarfile.SYMTYPE, link=str(course / "gradebook.db"))
        _tar_member(t, "a2_model.safetensors", tarfile.LNKTYPE, link=str(course / "gradebook.db"))
        _tar_member(t, "alice/fifo", tarfile.FIFOTYPE)
        _tar_member(t, "alice/a2_model.pt", tarfile.CHRTYPE)
        _tar_member(t, "../escape", data=b"out")
        _tar_member(t, "/tmp/absolute-escape", data=b"out")
        _tar_member(t, "alice/a2_model.safetensors", data=b"\0" * ((1 << 20) + 1))
    before = _outside(tmp_path)
    report = cli.collect(course, A2, box, max_file=1 << 20)
    assert report.collected == ["alice"] and submitted(course, "alice", A2) == {f"{A2}.ipynb": notebook(A2)}
    err = capsys.readouterr().err
    assert "alice/a2_model.pt: a link, not extracted" in err and "a2_model.safetensors: a link" in err
    assert "alice/fifo: a device or named pipe" in err and "alice/a2_model.pt: a device or named pipe" in err
    assert "../escape: an absolute path" in err and "/tmp/absolute-escape: an absolute path" in err
    assert "alice/a2_model.safetensors: 1048577 bytes, over the limit" in err
    assert _outside(tmp_path) == before and not Path("/tmp/absolute-escape").exists()
    assert only_collected(course) == [f"alice/{A2}/{A2}.ipynb"]
    assert_nothing_secret(course)


def test_a_tar_bomb_stops_being_read(course, box, capsys):
    with tarfile.open(box / "bob.tgz", "w:gz") as t:
        _tar_member(t, f"{A1}.ipynb", data=notebook())
        for i in range(4):
            _tar_member(t, f"junk{i}", data=b"\0" * (2 << 20))
    assert (box / "bob.tgz").stat().st_size < 200 << 10
    report = cli.collect(course, A1, box, max_file=1 << 20, max_student=2 << 20)
    assert report.collected == ["bob"] and submitted(course, "bob") == {f"{A1}.ipynb": notebook()}
    assert "unpacks to more than the student's limit" in capsys.readouterr().err


def test_a_second_submission_and_a_bad_archive_are_reported(course, box, capsys):
    (box / "alice.ipynb").write_bytes(notebook())
    with zipfile.ZipFile(box / "alice.zip", "w") as z:
        _zip_member(z, f"{A1}.ipynb", b"{}")
    (box / "bob.zip").write_bytes(b"not a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        _zip_member(z, f"{A1}.ipynb", notebook())
    data = buffer.getvalue().replace(b"\x08\x00", b"\x63\x00")  # the method in both headers: 99, unknown
    (box / "carol.zip").write_bytes(data)
    report = cli.collect(course, A1, box)
    assert report.collected == ["alice"] and submitted(course, "alice") == {f"{A1}.ipynb": notebook()}
    err = capsys.readouterr().err
    assert "second submission" in report.refused["alice"] and "bob.zip: an unreadable archive" in err
    assert f"carol: {A1}.ipynb: unreadable (" in err
    assert set(report.refused) == {"alice", "bob", "carol"}


@pytest.mark.slow
def test_the_instructors_command_grades_the_honest_and_not_the_link(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    cli.release(course, [A1])
    box = tmp_path / "inbox"
    box.mkdir()
    shutil.copy(solution(course), box / "alice.ipynb")  # an honest, perfect submission
    (box / "mallory.ipynb").symlink_to(solution(course))
    (box / "eve").symlink_to(box / "alice.ipynb")
    (box / "zed.ipynb").symlink_to(box / "nowhere")
    os.mkfifo(box / "pipe.ipynb")
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", A1,
                             "--submissions", str(box), "--no-sandbox"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "collected 1 submissions, refused 4" in result.stdout
    scores = cli.submission_scores(course, A1)
    assert set(scores) == {"alice"} and scores["alice"] > 0
    for student in ("mallory", "eve", "zed", "pipe"):
        assert re.search(rf"(?m)^{student}\s+NOT COLLECTED", result.stdout), f"{student} not reported"
        for area in ("submitted", "autograded", "feedback"):
            assert not (course / area / student).exists(), f"{area}/{student} exists"
    pages = cli.feedback(course, A1)
    assert [p.parents[1].name for p in pages] == ["alice"]
