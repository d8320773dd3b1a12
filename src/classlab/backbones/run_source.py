"""An earlier classlab run as a transfer backbone (``--backbone RUN_DIR``): its best.pt (architecture, weights)
and its preprocessing contract, which the new data is converted to (a run trained on grayscale digits wants
grayscale input)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..errors import ClasslabError
from ..inference.preprocess import Preprocessing


def plan(run_dir: Path, weights: str | None) -> dict:
    """BackbonePlan's fields for the run at ``run_dir``."""
    if weights is not None:
        raise ClasslabError("--weights does not apply when the backbone is a classlab run (its best.pt is used)")
    ckpt_path = run_dir / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    pre = Preprocessing(**ckpt["preprocessing"])
    if len(pre.image_size) != 2:
        raise ClasslabError(f"{run_dir} holds a model for volumes; transfer learning takes 2D images")
    return {"name": "run", "source": ckpt["model_info"], "state": ckpt["model"],
            "weights": f"run:{run_dir.resolve()}",
            "fingerprint": hashlib.blake2b(ckpt_path.read_bytes(), digest_size=16).hexdigest(),
            "mean": pre.mean, "std": pre.std, "default_size": pre.model_size, "min_size": 1,
            "channels": pre.channels}
