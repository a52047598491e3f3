"""Repository hygiene: notebooks are committed without outputs and with normalised metadata."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_notebooks_are_normalised():
    result = subprocess.run([sys.executable, "tools/nbnormalize.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme and "make book" in readme
    assert ci.strip().splitlines()[-1].strip() == "make test"
