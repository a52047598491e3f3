"""Shared fixtures: the repository root, CUDA skipping, executing chapters with papermill, and a
PostgreSQL server for the gradebook tests."""
from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
EXECUTED = ROOT / "_build" / "test-notebooks"  # executed copies, reused by the site test
sys.path.insert(0, str(ROOT / "tests" / "banks"))  # the submission banks import their shared bank_tools
os.environ.pop("COURSE_DOWNLOAD", None)  # the tests never download: data comes from disk or the test's own server


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def float32_on_cuda(request):
    """TF32 (on by default for cuDNN) rounds a GPU's products to 10 mantissa bits: a CUDA test that
    compares with a float32 reference must compute in float32."""
    if "cuda" not in request.keywords or not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved



@pytest.fixture(scope="session")
def graded_bank(tmp_path_factory):
    """``graded_bank(bank)``: the bank autograded in its own course directory, once per test run
    however many test modules look at it (``grading_support.Graded``)."""
    from grading_support import grade_bank

    graded = {}

    def grade(bank):
        if bank.assignment not in graded:
            graded[bank.assignment] = grade_bank(bank, tmp_path_factory)
        return graded[bank.assignment]

    return grade


@pytest.fixture
def library_answers_allowed():
    """For tests that feed the students' checks the course library's own answers (and broken copies
    of them, through adapters and subclasses): outside the sandbox's worker, those may run there."""
    from course_lib.grading.forbidden_ops import checking_the_library

    with checking_the_library():
        yield


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive holding ``members`` (name -> data), as a student or an LMS would upload it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


#: Debian's PostgreSQL programs (package postgresql), newest version last; empty if not installed.
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of this module's own, on a Unix socket (no TCP), with an empty database
    ``gradebook``: ``{"url": SQLAlchemy URL, "socket": folder}``. Skips when it cannot start (not
    installed, not root)."""
    if not POSTGRES_BIN:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="gradebook-pg-"))
    data, sock, bindir = base / "data", base / "sock", POSTGRES_BIN[-1]
    try:
        os.chmod(base, 0o755)
        shutil.chown(base, "postgres", "postgres")
        sock.mkdir()
        shutil.chown(sock, "postgres", "postgres")
        _as_postgres(f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
        _as_postgres(f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"),
                     "-o", f"-k {sock} -c listen_addresses=''", "start")
        _as_postgres(f"{bindir}/createdb", "-h", str(sock), "-U", "postgres", "gradebook")
    except (OSError, LookupError, subprocess.SubprocessError) as err:
        _stop_postgres(bindir, data, base)
        pytest.skip(f"PostgreSQL could not start: {err}")
    try:
        yield {"url": f"postgresql+psycopg2://postgres@/gradebook?host={sock}", "socket": sock}
    finally:
        _stop_postgres(bindir, data, base)


def _stop_postgres(bindir: str, data: Path, base: Path) -> None:
    if data.exists():
        subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def chapter_notebooks() -> list[Path]:
    return sorted(CHAPTERS.glob("*.ipynb"))


def fast_parameters(notebook: Path) -> dict:
    """The fast parameters a chapter declares for the tests (notebook metadata ``course.test_parameters``)."""
    meta = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]
    return meta.get("course", {}).get("test_parameters", {})


def execute_chapter(notebook: Path) -> Path:
    """Run ``notebook`` with its test parameters (once per source version) and return the executed copy."""
    import papermill

    params = fast_parameters(notebook)
    key = hashlib.sha256(notebook.read_bytes() + json.dumps(params, sort_keys=True).encode()).hexdigest()
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out, stamp = EXECUTED / notebook.name, EXECUTED / f"{notebook.stem}.key"
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return out
    papermill.execute_notebook(
        str(notebook), str(out), parameters=params, cwd=str(notebook.parent),
        kernel_name="python3", progress_bar=False, request_save_on_cell_execute=False,
    )
    stamp.write_text(key)
    return out
