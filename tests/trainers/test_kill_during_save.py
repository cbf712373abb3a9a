"""kill -9 at random moments during checkpoint saves: every rerun resumes and ends with the uninterrupted weights."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hfkit.trainers.checkpoints import checkpoint_problem
from tests.conftest import REPO

SCRIPT = REPO / "tests" / "trainers" / "tiny_run.py"
KILLS = 4
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def start(out: Path, slow_save: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), str(slow_save)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def kill_during_a_save(proc: subprocess.Popen, out: Path, rng: random.Random) -> bool:
    """Wait until a checkpoint is being written, then SIGKILL at a random moment of it; False if the run ended."""
    skip = rng.randint(0, 2)  # let a few saves pass so kills land at different steps
    while proc.poll() is None:
        saving = out.is_dir() and any(p.name.startswith("_tmp-checkpoint") for p in out.iterdir())
        if saving and skip == 0:
            time.sleep(rng.uniform(0.0, 0.3))  # a save takes ~0.4 s here (slow_save per torch.save)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if saving:
            skip -= 1
            while proc.poll() is None and any(p.name.startswith("_tmp-checkpoint") for p in out.iterdir()):
                time.sleep(0.005)
        time.sleep(0.005)
    return False


@pytest.mark.slow
def test_kill_9_during_saves_then_rerun_matches_an_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    reference = start(ref, slow_save=0.0)  # runs alongside the killed ones
    rng = random.Random(12)
    out = tmp_path / "run"
    for _ in range(KILLS):  # each restart resumes from the newest complete checkpoint, then is killed again
        proc = start(out, slow_save=0.1)
        assert kill_during_a_save(proc, out, rng), "the run finished before it could be killed"
        for folder in out.glob(
            "checkpoint-*"
        ):  # a kill never leaves a checkpoint-N that looks resumable but is not
            assert checkpoint_problem(folder) is None, folder
    final = subprocess.run([sys.executable, str(SCRIPT), str(out)], env=ENV, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming from" in final.stderr
    assert reference.wait() == 0, reference.stderr.read()[-3000:]

    expected, got = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert got.keys() == expected.keys()
    assert max((got[k] - expected[k]).abs().max().item() for k in expected) == 0.0
    assert not any(p.name.startswith("_tmp-") for p in out.iterdir())
