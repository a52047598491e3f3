"""The course runs where readers and students are, not only in its own clone.

* ``course.toml`` is the single source of truth for the public home: ``_config.yml``, the README,
  ``pyproject.toml`` and every notebook's install cell agree with it.
* The install cell does nothing inside the course's ``.venv`` and installs the release otherwise.
* The universal lock resolves for Linux, macOS and Windows; Binder's files agree with it.
* The acceptance test (slow): the wheel, installed with ``[notebooks]`` into a fresh venv outside the
  repository, runs a Fashion-MNIST chapter and an assignment, the data fetched by torchvision's own
  download code from a local stand-in for the public mirror.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import lock  # noqa: E402  (tools/lock.py)

from conftest import ROOT, fast_parameters  # noqa: E402
from course_lib import data, home  # noqa: E402

HOME = home.load()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RELEASES = sorted((ROOT / "assignments").glob("*/*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


# ---- one source of truth -------------------------------------------------------------------------

def test_everything_generated_from_course_toml_agrees_with_it():
    stale = home.out_of_date()
    assert not stale, f"disagree with course.toml (run `python -m course_lib.home sync`): {stale}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == HOME.repository and config["repository"]["branch"] == HOME.branch
    assert PYPROJECT["project"]["urls"]["Repository"] == HOME.repository
    assert HOME.requirement in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_changed_home_is_detected(tmp_path):
    """The check can fail: a copy whose course.toml names another repository is out of date everywhere."""
    for name in ("course.toml", "_config.yml", "README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "chapters", tmp_path / "chapters")
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    toml = tmp_path / "course.toml"
    toml.write_text(toml.read_text().replace(HOME.repository, "https://example.org/my-class/course"))
    stale = {p.name for p in home.out_of_date(tmp_path)}
    assert {"_config.yml", "README.md", "pyproject.toml", "01_visual_cortex.ipynb", "a1_convolution.ipynb"} <= stale


def test_release_tag_is_the_library_version():
    import course_lib

    assert HOME.release == f"v{course_lib.__version__}" == f"v{PYPROJECT['project']['version']}", (
        "course.toml's release tag, pyproject's version and course_lib.__version__ must name one release")


@pytest.mark.parametrize("path", home.notebooks() + RELEASES, ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_install_cell(path):
    installs = [i for i, c in enumerate(cells(path)) if home.is_install_cell(c)]
    assert installs == [1], f"{path.name}: one install cell right after the title, found at {installs}"
    cell = cells(path)[1]
    assert "hide-input" in cell["metadata"]["tags"], "the install cell is folded on the site"
    assert cell["source"] == home.install_cell_source(HOME)


# ---- the install cell ----------------------------------------------------------------------------

def run_install_cell(env_extra: dict | None = None, hide_course_lib: bool = False) -> dict:
    """Execute the install cell in a fresh interpreter of this venv with ``subprocess.run`` recorded
    (never run): returns the pip commands it would have run and ``COURSE_DOWNLOAD`` afterwards."""
    source = home.install_cell_source(HOME)
    probe = f"""
import json, os, subprocess, sys
calls = []
subprocess.run = lambda cmd, **kw: calls.append(cmd)
class Hide:  # as on a machine without course_lib: importing it raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "course_lib":
            raise ModuleNotFoundError(f"No module named {{name!r}}")
if {hide_course_lib!r}:
    sys.meta_path.insert(0, Hide())
try:
    exec(compile({source!r}, "install-cell", "exec"))
except ImportError:
    pass  # after the (recorded, not run) pip install, course_lib is still hidden
print(json.dumps({{"calls": calls, "download": os.environ.get("COURSE_DOWNLOAD")}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_", "COLAB_", "COURSE_DOWNLOAD"))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            env={**env, **(env_extra or {})}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_install_cell_is_a_no_op_in_the_course_venv():
    assert run_install_cell() == {"calls": [], "download": None}


def test_install_cell_installs_the_release_where_course_lib_is_missing():
    calls = run_install_cell(hide_course_lib=True)["calls"]
    assert len(calls) == 1 and calls[0][1:5] == ["-m", "pip", "install", "-q"], calls
    assert calls[0][-1] == HOME.requirement == f"course_lib[notebooks] @ git+{HOME.repository}@{HOME.release}"


@pytest.mark.parametrize("host", ["BINDER_REQUEST", "COLAB_RELEASE_TAG"])
def test_install_cell_allows_the_download_on_binder_and_colab(host):
    assert run_install_cell({host: "x"}) == {"calls": [], "download": "1"}


def test_glue_works_without_myst_nb(monkeypatch):
    import IPython.display

    from course_lib import display

    shown = []
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # not installed
    monkeypatch.setattr(IPython.display, "display", shown.append)
    display.glue("acc", "91.2%")
    display.glue("hidden", 3, display=False)
    assert shown == ["91.2%"]


# ---- packaging: extras, universal lock, Binder ---------------------------------------------------

def test_extras_and_python_version():
    from packaging.specifiers import SpecifierSet

    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {k: {re.split(r"[<>=!\[ ]", r)[0].lower() for r in v} for k, v in extras.items()}
    assert {"myst-nb", "papermill", "ipykernel", "tqdm"} <= names["notebooks"]
    assert {"nbgrader", "psycopg2-binary"} <= names["grading"]
    assert "jupyter-book" in names["book"] and "pytest" in names["dev"]
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert "3.11" in requires and "3.10" not in requires, "requires-python must match what is tested (3.11)"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in requires


def test_universal_lock_agrees_with_the_tested_pins():
    tested = {name: version for name, version, _ in lock.pins(ROOT / "requirements.txt")}
    locked = {name: version for name, version, _ in lock.pins(lock.LOCK)}
    assert {"torch", "torchvision", "myst-nb", "papermill"} <= set(locked)
    differ = {n: (v, tested[n]) for n, v in locked.items() if n in tested and tested[n] != v}
    assert not differ, f"requirements/notebooks.txt and requirements.txt disagree (run make lock-universal): {differ}"


@functools.cache
def uv() -> str | None:
    return os.environ.get("UV") or shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/torch/", timeout=15).close()
        return True
    except OSError:
        return False


PLATFORMS = {"linux": ("x86_64-unknown-linux-gnu", {}),
             "macos": ("aarch64-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": "14.0"}),  # torch: macOS 14+ arm64
             "windows": ("x86_64-pc-windows-msvc", {})}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_universal_lock_resolves_for_each_platform(platform, tmp_path):
    if uv() is None:
        pytest.skip("uv (the resolver) is not installed: pip install uv, or set UV=/path/to/uv")
    if not pypi_reachable():
        pytest.skip("PyPI's index is not reachable from this machine")
    target, env = PLATFORMS[platform]
    out = tmp_path / "resolved.txt"
    result = subprocess.run(
        [uv(), "pip", "compile", str(lock.LOCK), "--python-platform", target, "--python-version", lock.BINDER_PYTHON,
         "--only-binary", ":all:", "--index-url", "https://pypi.org/simple", "--no-header", "--no-annotate",
         "--no-python-downloads", "--quiet", "-o", str(out)],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, f"the lock does not install on {platform}:\n{result.stderr}"
    resolved = {(n, v) for n, v, _ in lock.pins(out)}
    locked = {(n, v) for n, v, _ in lock.pins(lock.LOCK)}
    assert resolved <= locked, f"{platform} needs pins the lock lacks: {sorted(resolved - locked)}"
    assert ("torch", "2.14.1") in resolved


def test_binder_files_are_consistent():
    binder = ROOT / "binder"
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    assert (binder / "requirements.txt").read_text(encoding="utf-8") == lock.binder_text(), (
        "binder/requirements.txt is not the lock's Linux CPU subset: run make lock-universal")
    binder_pins = {n: v for n, v, _ in lock.pins(binder / "requirements.txt")}
    linux = lock.linux_pins()
    assert binder_pins["torch"] == linux["torch"] + "+cpu" and not any(n.startswith("nvidia") for n in binder_pins)
    assert all(linux[n] == v.removesuffix("+cpu") for n, v in binder_pins.items())
    post = binder / "postBuild"
    assert os.access(post, os.X_OK), "repo2docker runs postBuild only when it is executable"
    commands = [line.strip() for line in post.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert "python -m pip install --no-deps ." in commands and data.PREPARE_COMMAND in commands


# ---- the acceptance test: a fresh venv outside the repository ------------------------------------

LOCAL_WHEELS = [Path("/opt/pypi-more/files")]  # this machine's local copies of PyTorch's wheels, if any
DEBIAN = data.DEBIAN_FASHION_MNIST
SITECUSTOMIZE = '''
# Test only: point torchvision's Fashion-MNIST mirror list at the test's local server and expect the
# checksums of the files it serves (Debian's recompressed .gz); torchvision's download code is
# unchanged. And hide this machine's Debian package, as on a machine without it.
import json, os, pathlib
if os.environ.get("COURSE_TEST_MIRROR"):
    mirror = json.loads(os.environ["COURSE_TEST_MIRROR"])
    from torchvision.datasets import FashionMNIST
    FashionMNIST.mirrors = [mirror["url"]]
    FashionMNIST.resources = [(name, md5) for name, md5 in mirror["md5"].items()]
    import course_lib.data
    course_lib.data.DEBIAN_FASHION_MNIST = pathlib.Path("/nonexistent/dataset-fashion-mnist")
'''


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that stops reading is no error here
            super().handle_error(request, client_address)


@contextlib.contextmanager
def mirror(folder: Path):
    """A Fashion-MNIST mirror on 127.0.0.1 (a free port) serving ``folder``'s files."""
    server = QuietServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """``pip install <wheel>[notebooks]`` into a new venv outside the repository; nothing else."""
    work = tmp_path_factory.mktemp("fresh")
    assert ROOT not in work.parents
    source = work / "source"  # build from a copy, so that the clone gets no build/ folder
    shutil.copytree(ROOT / "course_lib", source / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(work / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((work / "dist").glob("course_lib-*.whl"))
    venv = work / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    links = [str(p) for p in LOCAL_WHEELS if p.is_dir()]
    env = {**os.environ, "PIP_FIND_LINKS": " ".join([os.environ.get("PIP_FIND_LINKS", ""), *links]).strip()}
    start = time.perf_counter()
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[notebooks]"], check=True, env=env,
                   capture_output=True, timeout=1500)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"\nfresh venv: pip install <wheel>[notebooks] took {seconds:.0f} s, {size / 2**30:.2f} GiB installed")
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"python": python, "work": work, "wheel": wheel}


def user_env(venv: dict, data_dir: Path, url: str, served: Path, **extra) -> dict:
    """A user's environment: the fresh venv first on PATH, no repository on sys.path, the test mirror."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COURSE_DOWNLOAD")}
    bin_dir = str(venv["python"].parent)
    mirror_spec = {"url": url, "md5": {f.name: md5(f) for f in sorted(served.glob("*.gz"))}}
    return {**env, "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]), "VIRTUAL_ENV": str(venv["python"].parents[1]),
            "COURSE_DATA": str(data_dir), "COURSE_TEST_MIRROR": json.dumps(mirror_spec), "MPLBACKEND": "Agg", **extra}


def papermill(venv: dict, notebook: Path, out: Path, env: dict, parameters: dict | None = None,
              allow_errors: bool = False) -> dict:
    """Run ``notebook`` (a copy, in a folder of its own) with the fresh venv's papermill and kernel."""
    work = out.parent / f"{notebook.stem}-work"
    shutil.copytree(notebook.parent, work, dirs_exist_ok=True)
    run = ("import sys, json, papermill\n"
           "papermill.execute_notebook(sys.argv[1], sys.argv[2], parameters=json.loads(sys.argv[3]), cwd=sys.argv[4],"
           " kernel_name='python3', progress_bar=False, allow_errors=sys.argv[5] == 'True')")
    result = subprocess.run([str(venv["python"]), "-c", run, str(work / notebook.name), str(out),
                             json.dumps(parameters or {}), str(work), str(allow_errors)],
                            capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    executed = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"cells": []}
    executed["papermill_stderr"] = result.stderr[-3000:]
    return executed


def errors(nb: dict) -> list[tuple]:
    return [(c["metadata"].get("nbgrader", {}).get("grade_id"), o["ename"], o["evalue"][:200])
            for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="the local mirror serves the Debian package dataset-fashion-mnist")
def test_wheel_in_a_fresh_venv_runs_a_chapter_and_an_assignment(fresh_venv, tmp_path):
    python = fresh_venv["python"]
    # Installed from the wheel, not from the clone.
    where = subprocess.run([str(python), "-c", "import course_lib, myst_nb, papermill; print(course_lib.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip()
    assert str(fresh_venv["work"] / "venv") in where and str(ROOT) not in where

    data_dir = tmp_path / "data"
    with mirror(DEBIAN) as url:
        env = user_env(fresh_venv, data_dir, url, DEBIAN)
        # Without permission nothing is downloaded, and the error names the command.
        refused = subprocess.run([str(python), "-m", "course_lib.data", "prepare"], capture_output=True, text=True,
                                 env={**env, "COURSE_DATA": str(tmp_path / "elsewhere")}, cwd=tmp_path)
        assert refused.returncode == 1 and data.PREPARE_COMMAND in refused.stderr, refused.stdout + refused.stderr

        # A reader's laptop: COURSE_DOWNLOAD=1 lets the chapter fetch the data through torchvision.
        chapter = ROOT / "chapters" / "01_visual_cortex.ipynb"
        nb = papermill(fresh_venv, chapter, tmp_path / chapter.name, {**env, "COURSE_DOWNLOAD": "1"},
                       fast_parameters(chapter))
        assert not errors(nb), f"{chapter.name} failed in the fresh venv: {errors(nb)}\n{nb['papermill_stderr']}"
        assert not nb["cells"][1]["outputs"], "the install cell printed something: it tried to install"
        # torchvision keeps the archives it downloaded (and verified) next to the extracted files;
        # the Debian extraction path writes no .gz there.
        raw = data_dir / "FashionMNIST" / "raw"
        assert sorted(p.name for p in raw.glob("*-ubyte")) == sorted(data.FASHION_MNIST_FILES)
        assert {p.name: md5(p) for p in raw.glob("*.gz")} == {p.name: md5(p) for p in DEBIAN.glob("*.gz")}

        # A student: the released A2, unanswered; its self-checks run and fail only on the stubs.
        release = ROOT / "assignments" / "a2_architectures" / "a2_architectures.ipynb"
        nb = papermill(fresh_venv, release, tmp_path / release.name, env, allow_errors=True)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and all(c["execution_count"] is not None for c in code), nb["papermill_stderr"]
        found = errors(nb)
        assert found and {e[1] for e in found} == {"NotImplementedError"}, f"unexpected errors: {found}"
        assert all(grade for grade, *_ in found), "only test cells may fail in an unanswered release"


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="the local mirror serves the Debian package dataset-fashion-mnist")
def test_a_corrupted_download_is_refused(fresh_venv, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for f in DEBIAN.glob("*.gz"):
        shutil.copy(f, served / f.name)
    with mirror(served) as url:
        env = user_env(fresh_venv, tmp_path / "data", url, served)  # the checksums of the intact files
        target = served / "t10k-labels-idx1-ubyte.gz"
        blob = bytearray(target.read_bytes())
        blob[100] ^= 0xFF  # one flipped byte, as a broken mirror or a man in the middle would serve
        target.write_bytes(bytes(blob))
        result = subprocess.run([str(fresh_venv["python"]), "-m", "course_lib.data", "prepare", "--download"],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode != 0 and "corrupted" in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()
