"""An LMS download as one ``.zip`` (``autograde A --submissions download.zip --lms``):
collected exactly as the same download unpacked into a folder, or refused whole when it holds what
no LMS writes (a link, an escaping path, a bomb), with nothing collected and no unpacked file left.

The reference for "exactly as a folder" is the folder path of ``lms.collect``, which predates the
zip reader and does not use it; the expected files are also written out by hand.
"""
from __future__ import annotations

import io
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, zip_bytes

from course_lib.grading.autograder import cli, lms, lms_download

A1 = "a1_convolution"
RELEASED = (ROOT / "assignments" / A1 / f"{A1}.ipynb").read_bytes()
SECRET = b"gradebook secret 31337"


@pytest.fixture
def course(tmp_path) -> Path:
    root = tmp_path / "course"
    (root / "assignments").mkdir(parents=True)
    (root / "assignments" / A1).symlink_to(ROOT / "assignments" / A1)
    (root / "gradebook.db").write_bytes(SECRET)
    return root


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch) -> Path:
    """``$TMPDIR`` of the test's own, so that a leftover unpacked folder shows."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def _member(archive: zipfile.ZipFile, name: str, data: bytes = b"", mode: int = stat.S_IFREG | 0o644) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr, info.compress_type = 3, mode << 16, zipfile.ZIP_DEFLATED
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # one case wants a name twice
        archive.writestr(info, data)


#: A Canvas-style flat download and a Moodle-style folder, as name -> bytes.
DOWNLOAD = {
    f"alice_1_2026-12-01-09-00-00_{A1}.ipynb": b"an earlier attempt",
    f"alice_1_LATE_2026-12-02-13-30-00_{A1} (1).ipynb": RELEASED,
    "bob_2_2026-12-01-08-00-00_homework.zip": zip_bytes({f"bob/{A1}.ipynb": RELEASED,
                                                          "bob/timestamp.txt": b"2026-11-01 00:00:00"}),
    f"erin_5_2026-13-01-08-00-00_{A1}.ipynb": RELEASED,  # month 13: refused, as in a folder
    f"Dan Smith_4_assignsubmission_file_/{A1}.ipynb": RELEASED,  # does not match the pattern
    ".DS_Store": b"finder", f"__MACOSX/._alice_1_2026-12-01-09-00-00_{A1}.ipynb": b"resource fork",
}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_zip_download_is_collected_as_the_same_folder(course, tmp_path, capsys, private_tmp):
    with zipfile.ZipFile(tmp_path / "download.zip", "w") as archive:
        for name, data in DOWNLOAD.items():
            _member(archive, name, data)
    from_zip = cli.collect(course, A1, tmp_path / "download.zip", pattern=lms.DEFAULT_PATTERN)
    zip_err = capsys.readouterr().err
    folder = tmp_path / "download"
    for name, data in DOWNLOAD.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    reference = tmp_path / "reference"
    (reference / "assignments").mkdir(parents=True)
    (reference / "assignments" / A1).symlink_to(ROOT / "assignments" / A1)
    from_folder = cli.collect(reference, A1, folder, pattern=lms.DEFAULT_PATTERN)
    assert from_zip == from_folder
    assert zip_err == capsys.readouterr().err  # the same messages, naming the same paths
    assert _tree(course / "submitted") == _tree(reference / "submitted") == {
        f"alice/{A1}/{A1}.ipynb": RELEASED, f"alice/{A1}/timestamp.txt": b"2026-12-02T13:30:00+00:00",
        f"bob/{A1}/{A1}.ipynb": RELEASED, f"bob/{A1}/timestamp.txt": b"2026-12-01T08:00:00+00:00"}
    assert sorted(from_zip.refused) == ["erin"]
    assert list(private_tmp.iterdir()) == []  # the unpacked folder is gone


def test_a_moodle_zip_keeps_its_folders_and_reports_deeper_ones(course, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "moodle.zip", "w") as archive:
        _member(archive, "alice_17_assignsubmission_file_/", mode=stat.S_IFDIR | 0o755)
        _member(archive, "alice_17_assignsubmission_file_/my work.ipynb", RELEASED)
        _member(archive, f"bob_18_assignsubmission_file_/deeper/{A1}.ipynb", RELEASED)
    pattern = r"^(?P<student_id>[^_/]+)_\d+_assignsubmission_file_/(?P<file_id>[^/]+)$"
    report = cli.collect(course, A1, tmp_path / "moodle.zip", pattern=pattern)
    assert report.collected == ["alice"] and sorted(report.refused) == ["bob"]
    assert "a folder, never followed or read" in report.refused["bob"]
    assert _tree(course / "submitted") == {f"alice/{A1}/{A1}.ipynb": RELEASED}


def _lying_zip() -> bytes:
    """A member that declares 100 bytes and unpacks to 2 MiB (a zip bomb's trick)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _member(archive, f"alice_1_2026-12-01-09-00-00_{A1}.ipynb", RELEASED)
        _member(archive, f"bob_2_2026-12-01-09-00-00_{A1}.ipynb", b"\0" * (2 << 20))
    data = bytearray(buffer.getvalue())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    return bytes(data)


def _bad(extra: list[tuple[str, bytes, int]]) -> bytes:
    """An honest download for alice, plus ``extra`` members (name, data, mode)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _member(archive, f"alice_1_2026-12-01-09-00-00_{A1}.ipynb", RELEASED)
        for name, data, mode in extra:
            _member(archive, name, data, mode)
    return buffer.getvalue()


REG, LINK, FIFO = stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644
BAD = {
    "a link": (_bad([(f"bob_2_2026-12-01-09-00-00_{A1}.ipynb", b"../course/gradebook.db", LINK)]),
               "a symbolic link; an LMS download holds only files and folders"),
    "a named pipe": (_bad([(f"bob_2_2026-12-01-09-00-00_{A1}.ipynb", b"", FIFO)]), "a named pipe"),
    "..": (_bad([(f"../bob_2_2026-12-01-09-00-00_{A1}.ipynb", RELEASED, REG)]), "leaves the download"),
    "a deep ..": (_bad([(f"x/../../bob_2_2026-12-01-09-00-00_{A1}.ipynb", RELEASED, REG)]), "leaves the download"),
    "an absolute path": (_bad([("/tmp/lms-download-escape", RELEASED, REG)]), "an absolute path"),
    "a drive letter": (_bad([("C:/bob.ipynb", RELEASED, REG)]), "an absolute path"),
    "a backslash ..": (_bad([("..\\bob.ipynb", RELEASED, REG)]), "leaves the download"),
    "a name twice": (_bad([(f"alice_1_2026-12-01-09-00-00_{A1}.ipynb", RELEASED, REG)]), "a second member"),
    "a file as a folder": (_bad([(f"alice_1_2026-12-01-09-00-00_{A1}.ipynb/x", RELEASED, REG)]),
                           "cannot be unpacked"),
    "a big member": (_bad([(f"bob_2_2026-12-01-09-00-00_{A1}.ipynb", b"\0" * (3 << 20), REG)]),
                     "over the limit of 2097152 (--max-submission-mb)"),
    "a lying size": (_lying_zip(), "not a readable zip (BadZipFile: Bad CRC-32"),
    "not a zip": (b"PK\x03\x04 this is not a zip at all" * 10, "not a readable zip (BadZipFile"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_zip_download_is_refused_whole(course, tmp_path, private_tmp, case):
    data, message = BAD[case]
    (tmp_path / "download.zip").write_bytes(data)
    with pytest.raises(ValueError, match="nothing collected") as err:
        cli.collect(course, A1, tmp_path / "download.zip", pattern=lms.DEFAULT_PATTERN, max_student=2 << 20)
    assert message in str(err.value) and str(err.value).startswith(f"{tmp_path / 'download.zip'}: ")
    assert not (course / "submitted" / "alice").exists()  # alice's honest upload is not collected either
    assert list(private_tmp.iterdir()) == [] and not Path("/tmp/lms-download-escape").exists()
    assert (course / "gradebook.db").read_bytes() == SECRET


def test_too_many_members_or_bytes_are_refused_before_unpacking(course, tmp_path, private_tmp, monkeypatch):
    (tmp_path / "download.zip").write_bytes(_bad([(f"s{i}_1_2026-12-01-09-00-00_{A1}.ipynb", RELEASED, REG)
                                                   for i in range(4)]))
    monkeypatch.setattr(lms_download, "MAX_MEMBERS", 4)
    with pytest.raises(ValueError, match="5 members, more than 4; nothing collected"):
        cli.collect(course, A1, tmp_path / "download.zip", pattern=lms.DEFAULT_PATTERN)
    monkeypatch.setattr(lms_download, "MAX_MEMBERS", 5)
    with pytest.raises(ValueError, match=f"unpacks to {5 * len(RELEASED)} bytes, more than the limit of 1000"):
        with lms_download.unpacked(tmp_path / "download.zip", cli.inbox.expected_files(course / "assignments" / A1),
                                   max_total=1000):
            pass
    assert list(private_tmp.iterdir()) == [] and not (course / "submitted").exists()


def test_the_command_takes_a_zip_with_lms_only(course, tmp_path, monkeypatch, capsys):
    (tmp_path / "download.zip").write_bytes(_bad([]))
    graded = []
    monkeypatch.setattr(cli, "autograde", lambda root, assignment, **kw: graded.append(assignment) or {"alice": 1.0})
    command = ["--root", str(course), "autograde", A1, "--submissions", str(tmp_path / "download.zip")]
    assert cli.main(command) == 1
    assert "is not a folder (an LMS download's .zip needs --lms or --pattern)" in capsys.readouterr().err
    assert graded == [] and not (course / "submitted").exists()
    assert cli.main([*command, "--lms"]) == 0
    assert "collected 1 submissions, refused 0" in capsys.readouterr().out
    assert graded == [A1] and _tree(course / "submitted") == {f"alice/{A1}/{A1}.ipynb": RELEASED,
                                                              f"alice/{A1}/timestamp.txt": b"2026-12-01T09:00:00+00:00"}
    (tmp_path / "download.zip").write_bytes(BAD["a link"][0])
    assert cli.main([*command, "--lms"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "a symbolic link" in err[0]
    assert graded == [A1]  # not graded again
