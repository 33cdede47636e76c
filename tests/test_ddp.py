"""Distributed training wiring: 2 CPU processes (gloo) under Lightning's DDP strategy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).with_name("_ddp_train.py")


@pytest.mark.slow
def test_ddp_two_processes_sync_weights_and_sample_independently(tmp_path):
    # cwd tmp_path: Lightning's logs land there; the tests folder is on the path for conftest
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(SCRIPT.parent),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    initial = torch.load(tmp_path / "initial.pt")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # DDP averages gradients, so both processes end with the same, trained weights ...
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)
    # ... while each process draws its own minibatches of every modality.
    b0, b1 = np.load(tmp_path / "batches0.npz"), np.load(tmp_path / "batches1.npz")
    assert set(b0.files) == {"rna", "adt"}
    for modality in b0.files:
        assert not np.array_equal(b0[modality], b1[modality])
