"""Helper script for test_ddp.py: train on 2 CPU processes (gloo) under Lightning's DDP.

Lightning's "ddp" launcher re-runs this script for the second process, so it cannot live
inside a test function. Each process saves its final weights and first minibatch to OUT.
"""

import os
import sys

import mudata
import numpy as np
import torch
from conftest import make_unpaired

import scmosaic

if __name__ == "__main__":
    out = sys.argv[1]
    torch.set_num_threads(1)
    mudata.set_options(pull_on_update=False)
    mdata = make_unpaired()
    scmosaic.SCMODAL.setup_mudata(
        mdata, modalities=["rna", "adt"], links=[("rna", "adt", "linked", "linked")]
    )
    model = scmosaic.SCMODAL(mdata, n_hidden=16, n_latent=4, seed=0)
    torch.save(model.module.state_dict(), os.path.join(out, "initial.pt"))
    model.train(
        max_steps=6,
        batch_size=32,
        accelerator="cpu",
        devices=2,
        enable_progress_bar=False,
        default_root_dir=out,
    )
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    loaders = model.trainer.datamodule.train_dataloader()  # re-created with this rank's seed
    first = {m: np.asarray(next(iter(dl.sampler))) for m, dl in loaders.items()}
    np.savez(os.path.join(out, f"batches{rank}.npz"), **first)
    torch.save(model.module.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    assert model.n_iterations_trained_ == 6
