"""``classlab train DATA --model scratch-mlp``: the NumPy MLP in the same run format as the torch models
(config, split manifest, history.csv + curves.png, evaluation report, predictions), so the two compare
line by line. The weights are saved as ``scratch.npz`` (plain arrays, no pickle)."""

from __future__ import annotations

import inspect
import io
import json
import time
from pathlib import Path

import numpy as np

from ..data.options import DataOptions, load_and_split, record_split
from ..errors import ClasslabError
from ..fileio import atomic_write_bytes
from ..models import create_model
from ..runs import RunResult, RunWriter
from ..runs.outputs import write_results
from ..scratch.mlp import ScratchMLP
from ..training.config import TrainConfig

# The training options the NumPy MLP implements are its constructor's; precision and device do not apply
# to NumPy and are ignored. Any other option must keep TrainConfig's default.
IGNORED = {"model", "model_options", "precision", "device"}


def _check(cfg: TrainConfig) -> None:
    implemented = set(inspect.signature(ScratchMLP).parameters) | IGNORED
    defaults = TrainConfig()
    unsupported = [k for k in vars(cfg) if k not in implemented and getattr(cfg, k) != getattr(defaults, k)]
    if unsupported:
        raise ClasslabError(f"the scratch MLP does not implement {', '.join('--' + k.replace('_', '-') for k in unsupported)};"
                            " it takes --epochs, --batch-size, --lr, --optimizer (sgd, nesterov, adam), --momentum, "
                            "--weight-decay, --seed and -o hidden=..., activation=..., dropout=...")
    if cfg.optimizer not in ("sgd", "nesterov", "adam"):
        raise ClasslabError(f"the scratch MLP's optimizers are sgd (with --momentum), nesterov and adam; got {cfg.optimizer}")


def build(cfg: TrainConfig, network: ScratchMLP) -> ScratchMLP:
    """The registry's network (structure) with the run's training settings."""
    optimizer = {"sgd": "momentum" if cfg.momentum else "sgd"}.get(cfg.optimizer, cfg.optimizer)
    return ScratchMLP(network.hidden, network.activation, network.dropout, optimizer, cfg.lr, cfg.momentum,
                      cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.seed, network.dtype)


def rows(ds, indices, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Flattened pixels standardised per channel with the training split's statistics (as the torch models are)."""
    x = np.asarray(ds.images[indices], np.float32) / 255
    return ((x - mean) / std).reshape(len(indices), -1)


def run_scratch(opts: DataOptions, cfg: TrainConfig, runs_dir=None, progress: bool = True) -> RunResult:
    from ..data.dataset import channel_stats

    _check(cfg)
    cfg.validate()
    create_model(cfg.model, 2, 1, 1, **cfg.model_options)  # the model options, checked before any data is read
    ds, split = load_and_split(opts)
    model = build(cfg, create_model(cfg.model, ds.num_classes, ds.channels, ds.item_shape[:-1], **cfg.model_options))
    train, val, test = (split.indices(s) for s in ("train", "val", "test"))
    cfg = cfg.for_split(len(train))
    mean, std = (np.array(v, np.float32) for v in channel_stats(ds.subset(train).images))
    std = np.maximum(std, 1e-6)
    run = RunWriter("train", ds.name, runs_dir)
    run.write_config({"data": vars(opts), "train": cfg.to_dict(), "model": {"name": "scratch-mlp", **cfg.model_options}},
                     cfg.seed)
    record_split(run.run_dir, ds, split)
    x_train, x_val, x_test = (rows(ds, i, mean, std) for i in (train, val, test))

    def log(row):
        row["seconds"] = time.perf_counter() - log.t
        log.t = time.perf_counter()
        if progress:
            val_text = f"  val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""
            print(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}{val_text}", flush=True)
    log.t = time.perf_counter()
    t0 = time.perf_counter()
    model.fit(x_train, ds.labels[train], x_val, ds.labels[val], num_classes=ds.num_classes, on_epoch=log)
    seconds = time.perf_counter() - t0
    proba = model.predict_proba(x_test)
    n_params = int(sum(p.size for p in model.params))
    summary = {"model": "scratch-mlp", "parameters": n_params, "epochs_run": cfg.epochs, "train_seconds": seconds,
               "hidden": model.hidden, "activation": model.activation, "optimizer": model.optimizer}
    save_weights(run.run_dir / "scratch.npz", model, mean, std, ds.class_names)
    model_text = (f"A NumPy MLP written from scratch (`classlab.scratch.ScratchMLP`): hidden {model.hidden}, "
                  f"{model.activation}, dropout {model.dropout}; {n_params:,} parameters; {model.optimizer}, lr "
                  f"{cfg.lr}, batch {cfg.batch_size}, {cfg.epochs} epochs in {seconds:.1f} s. The final epoch's "
                  "weights are scored (`scratch.npz`).")
    val_proba = model.predict_proba(x_val) if len(val) else None
    return write_results(run, ds, split, test, proba, cfg.seed, model.history, summary,
                         f"scratch-mlp (NumPy) on {ds.name}", model_text,
                         val=(val, val_proba) if val_proba is not None else None)


def save_weights(path: Path, model: ScratchMLP, mean, std, class_names) -> Path:
    buf = io.BytesIO()
    meta = {"hidden": model.hidden, "activation": model.activation, "class_names": class_names}
    np.savez(buf, meta=np.array(json.dumps(meta)), mean=mean, std=std,
             **{f"param{i}": p for i, p in enumerate(model.params)})
    return atomic_write_bytes(path, buf.getvalue())
