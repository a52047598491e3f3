"""The course's public home (repository, branch, release tag) and what is generated from it.

``course.toml`` at the repository root is the single source of truth. From it come

* ``_config.yml``'s ``repository:`` block (the book's repository, issue and launch buttons);
* the **install cell** at the top of every chapter and every assignment source: it installs
  ``course_lib[notebooks]`` from the release tag when the library is missing (Colab, Binder, a
  laptop's own Python) and does nothing inside a clone of the course, whose ``.venv`` has it;
* the README's install command and ``pyproject.toml``'s ``Repository`` URL.

``python -m course_lib.home sync`` rewrites them; ``python -m course_lib.home check`` (and
``tests/test_portability.py``) says what disagrees. This module is a maintainer's tool: it needs the
repository (an installed wheel has no ``course.toml``); the install cell itself needs nothing.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_TAG = "course-install"          # marks the generated cell (with hide-input: folded on the site)
INSTALL_TAGS = ["hide-input", INSTALL_TAG]


@dataclass(frozen=True)
class Home:
    repository: str   # https://github.com/OWNER/NAME
    branch: str
    release: str      # the git tag, "v" + course_lib's version

    @property
    def version(self) -> str:
        return self.release.removeprefix("v")

    @property
    def requirement(self) -> str:
        """What pip installs in a notebook: the library with its notebook extras, at the release tag."""
        return f"course_lib[notebooks] @ git+{self.repository}@{self.release}"


def load(root: Path = REPO) -> Home:
    path = root / "course.toml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the course's home is set there (run from a clone)")
    table = tomllib.loads(path.read_text(encoding="utf-8"))["home"]
    home = Home(table["repository"].rstrip("/"), table["branch"], table["release"])
    if not re.fullmatch(r"https://[^\s@]+", home.repository):
        raise ValueError(f"course.toml: repository must be an https URL, got {home.repository!r}")
    return home


def install_cell_source(home: Home) -> str:
    """The first code cell of every notebook; plain Python, since course_lib may not exist yet."""
    return f'''\
# Set-up for Colab, Binder or your own Python (does nothing inside the course's own .venv):
# installs the course library this notebook was written for and, on Colab or Binder, allows
# the Fashion-MNIST download (elsewhere: COURSE_DOWNLOAD=1 or `python -m course_lib.data prepare --download`).
import subprocess, sys
try:
    import course_lib
    ready = course_lib.__version__ == "{home.version}"
except ImportError:
    ready = False
if not ready:
    if "course_lib" in sys.modules:
        raise RuntimeError("another course_lib version is loaded: restart the kernel after installing")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "{home.requirement}"], check=True)
    import course_lib
import course_lib.data
download_allowed = course_lib.data.allow_download_when_hosted()'''


def _install_cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(INSTALL_TAGS)},
            "outputs": [], "source": source}


def is_install_cell(cell: dict) -> bool:
    return INSTALL_TAG in cell.get("metadata", {}).get("tags", [])


def notebooks(root: Path = REPO) -> list[Path]:
    """The notebooks that carry the install cell: chapters and assignment sources (releases are generated)."""
    return sorted((root / "chapters").glob("*.ipynb")) + sorted((root / "solutions").glob("*/*.ipynb"))


def with_install_cell(nb: dict, source: str) -> dict:
    """``nb`` with exactly one install cell, right after the title (the first Markdown cell)."""
    cells = [c for c in nb["cells"] if not is_install_cell(c)]
    at = 1 if cells and cells[0]["cell_type"] == "markdown" else 0
    return {**nb, "cells": cells[:at] + [_install_cell(source)] + cells[at:]}


def config_text(text: str, home: Home) -> str:
    """``_config.yml`` with its repository URL and branch set from ``home``."""
    text, n_url = re.subn(r"(?m)^(repository:\n(?:  .*\n)*?  url: ).*$", rf"\g<1>{home.repository}", text)
    text, n_branch = re.subn(r"(?m)^(repository:\n(?:  .*\n)*?  branch: ).*$", rf"\g<1>{home.branch}", text)
    if n_url != 1 or n_branch != 1:
        raise ValueError("_config.yml: no `repository:` block with `url:` and `branch:` lines")
    return text


def pyproject_text(text: str, home: Home) -> str:
    """``pyproject.toml`` with ``[project.urls] Repository`` set from ``home``."""
    text, n = re.subn(r'(?m)^Repository = ".*"$', f'Repository = "{home.repository}"', text)
    if n != 1:
        raise ValueError('pyproject.toml: no `Repository = "..."` line under [project.urls]')
    return text


README_BEGIN, README_END = "<!-- course-home: generated from course.toml -->", "<!-- /course-home -->"


def readme_block(home: Home) -> str:
    return f"""{README_BEGIN}
```bash
pip install "{home.requirement}"
```
{README_END}"""


def readme_text(text: str, home: Home) -> str:
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"README.md needs exactly one block between {README_BEGIN} and {README_END}")
    return pattern.sub(lambda _: readme_block(home), text)


def planned(root: Path = REPO) -> dict[Path, str]:
    """Every generated file's wanted text (notebooks normalised as tools/nbnormalize.py writes them)."""
    sys.path.insert(0, str(root / "tools"))
    try:
        import nbnormalize
    finally:
        sys.path.pop(0)
    home = load(root)
    wanted = {root / "_config.yml": config_text((root / "_config.yml").read_text(encoding="utf-8"), home),
              root / "pyproject.toml": pyproject_text((root / "pyproject.toml").read_text(encoding="utf-8"), home),
              root / "README.md": readme_text((root / "README.md").read_text(encoding="utf-8"), home)}
    source = install_cell_source(home)
    for path in notebooks(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        wanted[path] = nbnormalize.dumps(nbnormalize.normalize(with_install_cell(nb, source)))
    return wanted


def out_of_date(root: Path = REPO) -> list[Path]:
    return [p for p, text in planned(root).items() if p.read_text(encoding="utf-8") != text]


def _main(argv: list[str]) -> int:
    if argv[:1] == ["sync"]:
        for path, text in planned().items():
            if path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                print(f"rewrote {path.relative_to(REPO)}")
        print("now run `python -m course_lib.grading release` and commit solutions/ and assignments/")
        return 0
    if argv[:1] == ["check"]:
        stale = out_of_date()
        for path in stale:
            print(f"{path.relative_to(REPO)} disagrees with course.toml: run `python -m course_lib.home sync`")
        return 1 if stale else 0
    print("usage: python -m course_lib.home {sync,check}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
