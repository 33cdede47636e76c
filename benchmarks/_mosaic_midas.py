"""One MIDAS run of ``mosaic.py``, in MIDAS's own virtual environment (never imports scmosaic).

    benchmarks/.venvs/midas/bin/python benchmarks/_mosaic_midas.py DATA.h5mu SEED OUT.npz \
        [--max-epochs N]

MIDAS's own quick start on its own bundled data (``quickstart_pbmc_mosaic.h5mu``, the
file ``mosaic.py`` reads): the steps of ``scmidas.integrate(mdata)`` as its docstring gives
them (``seed_everything``, ``MIDAS.setup_mudata(batch_key="batch")``, ``MIDAS(mdata,
configs, batch_size)``, ``train(max_epochs)``, ``get_latent_representation()``) with its
quick-start defaults (``scmidas.api._QUICKSTART_DEFAULTS``: batch size 128, 65 epochs,
learning rates 3e-4), except: the seed is the benchmark's; ``accelerator="cpu"`` (no GPU
here); DataLoader workers 0 instead of its config's 20 (a 2-core shared machine; data
loading only, the minibatches are the same); no progress bar, logger or checkpoints. The
embedding is the biological latent ``z_c`` (``get_latent_representation()``, what
``integrate`` writes to ``mdata.obsm["X_midas"]``): one joint code per cell (a paired cell's
from both modalities), written with ``_mosaic_io``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _mosaic_io import save_embedding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("seed", type=int)
    parser.add_argument("out")
    parser.add_argument("--max-epochs", type=int, default=None, help="None: the quick start's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import mudata
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import scmidas

    mdata = mudata.read_h5mu(args.data)
    quick = dict(scmidas.api._QUICKSTART_DEFAULTS)
    epochs = args.max_epochs or quick["max_epochs"]
    start = time.perf_counter()
    # scmidas.integrate(mdata) step by step, as its docstring spells it out, with one change:
    # DataLoader workers 0 instead of the config's 20 (2 shared cores; loading only).
    import lightning as L

    L.seed_everything(args.seed, verbose=False)
    configs = scmidas.load_config()
    configs["lr_net"], configs["lr_dsc"] = quick["lr_net"], quick["lr_dsc"]
    configs["num_workers"], configs["persistent_workers"] = 0, False  # (needs workers > 0)
    with tempfile.TemporaryDirectory() as tmp:
        scmidas.MIDAS.setup_mudata(mdata, batch_key="batch")
        model = scmidas.MIDAS(
            mdata,
            configs=configs,
            batch_size=quick["batch_size"],
            save_model_path=str(Path(tmp) / "scmidas"),
        )
        model.train(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            logger=False,
            enable_checkpointing=False,
        )
        mdata.obsm["X_midas"] = model.get_latent_representation()
    seconds = time.perf_counter() - start
    z = np.asarray(mdata.obsm["X_midas"], dtype=np.float32)
    if not np.isfinite(z).all():
        raise RuntimeError("MIDAS left cells without a latent code (NaN rows)")
    obs = mdata.obs
    rows = {
        "modality": np.full(mdata.n_obs, "joint"),
        "obs_name": np.asarray(mdata.obs_names),
        "cell_id": np.asarray(mdata.obs_names),
        "batch": obs["batch"].astype(str).to_numpy(),
        "celltype": obs["celltype"].astype(str).to_numpy(),
        "hidden": np.zeros(mdata.n_obs, bool),
    }
    meta = {
        "seconds": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "device": f"CPU ({platform.machine()}, {args.threads} torch thread)",
        "settings": {
            "call": "scmidas.integrate(mdata) steps (quick-start defaults), CPU, seed",
            "max_epochs": epochs,
            "batch_size": quick["batch_size"],
            "lr_net": quick["lr_net"],
            "lr_dsc": quick["lr_dsc"],
            "num_workers": 0,
            "persistent_workers": False,
            "latent": "z_c (mdata.obsm['X_midas'])",
        },
        "embedding_dims": int(z.shape[1]),
        "versions": {
            p: importlib.metadata.version(p) for p in ("scmidas", "torch", "lightning", "mudata")
        },
    }
    save_embedding(args.out, z, rows, meta)


if __name__ == "__main__":
    main()
