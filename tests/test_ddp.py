"""DDP with 2 CPU processes (gloo) equals one process on the same global batches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.ddp_demo import make_model, train

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.timeout(180)
@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not found")
def test_torchrun_two_processes_match_one(tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [str(TORCHRUN if TORCHRUN.exists() else shutil.which("torchrun")), "--standalone", "--nproc_per_node=2",
           "-m", "course_lib.ddp_demo", "--steps", "5", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=env, cwd=tmp_path)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    ddp_state = torch.load(out, weights_only=True)
    reference = train(make_model(), steps=5, batch_size=64, lr=0.1)  # one process, whole global batches
    initial = make_model()
    for (name, a), b, c in zip(reference.state_dict().items(), ddp_state.values(), initial.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")
        assert not torch.equal(a, c), f"{name} did not train"
