"""The training engine on real data: accuracy, run files, checkpoints, resume after SIGKILL, errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from classlab.cli import main
from classlab.errors import ClasslabError
from classlab.training import TrainConfig
from classlab.checkpoint import load_checkpoint
from conftest import imbalanced_digits_tree, interrupted_train


def _latest(runs_dir):
    return sorted(runs_dir.iterdir())[-1]


def test_digits_mlp_with_defaults(runs_dir, capsys):
    """The issue's bar: `classlab train digits --model mlp` reaches 95% test accuracy (its speed is measured
    in benchmarks (speed.py, train.py), not asserted here: a shared or slower machine must still pass)."""
    assert main(["train", "digits", "--model", "mlp"]) == 0
    run = _latest(runs_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    for name in ("history.csv", "curves.png", "last.pt", "best.pt", "config.json", "split.csv", "report.md",
                 "predictions.csv", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(history) == 11
    ckpt = load_checkpoint(run / "best.pt")  # weights_only=True
    assert ckpt["class_names"] == [str(i) for i in range(10)]
    assert ckpt["preprocessing"]["image_size"] == [8, 8] and len(ckpt["preprocessing"]["mean"]) == 1
    assert {"optimizer", "scheduler", "rng", "config", "model_info", "fit_state"} <= set(ckpt)


@pytest.mark.parametrize("flags", [
    ["--optimizer", "nesterov", "--lr", "0.05", "--schedule", "cosine", "--warmup-epochs", "1"],
    ["--optimizer", "adamw", "--weight-decay", "0.01", "--schedule", "onecycle", "--label-smoothing", "0.1"],
    ["--optimizer", "rmsprop", "--lr", "0.001", "--schedule", "step", "--step-size", "2", "--grad-clip", "1"],
    ["--loss", "mse", "--lr", "0.01", "--class-weight", "balanced", "--sampler", "balanced"],
])
def test_training_options_learn(flags, runs_dir, capsys):
    assert main(["train", "digits", "--model", "mlp", "--epochs", "6", *flags]) == 0
    assert json.loads((_latest(runs_dir) / "metrics.json").read_text())["accuracy"] > 0.85


def test_cnn_with_augmentation_and_config_file(tmp_path, runs_dir, capsys):
    config = tmp_path / "train.json"
    # Translation only: a flipped digit is another symbol, so flips would hurt here.
    config.write_text(json.dumps({"model": "cnn", "epochs": 8, "augment": "crop", "lr": 0.003,
                                  "model_options": {"filters": [16, 32], "dense": [64]}}))
    assert main(["train", "digits", "--image-size", "16", "--config", str(config)]) == 0
    run = _latest(runs_dir)
    saved = json.loads((run / "config.json").read_text())["options"]["train"]
    assert saved["augment"] == "crop" and saved["model_options"]["filters"] == [16, 32]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.8


def test_early_stopping_restores_the_best_epoch(runs_dir, capsys):
    assert main(["train", "digits", "--model", "mlp", "--epochs", "200", "--early-stopping", "2", "--lr", "0.01"]) == 0
    train = json.loads((_latest(runs_dir) / "metrics.json").read_text())["train"]
    assert train["stopped_early"] and train["epochs_run"] < 200
    assert train["best_epoch"] == train["epochs_run"] - 2


def _cli(*args):
    return [sys.executable, "-m", "classlab", *args]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    args = ["train", "digits", "--model", "mlp", "--epochs", "150", "--deterministic", "--lr", "0.003",
            "-o", "dropout=0.2"]  # dropout: the resumed run must also restore the global RNG
    env = {**os.environ, "CLASSLAB_RUNS": str(tmp_path / "a")}
    subprocess.run(_cli(*args), env=env, check=True, capture_output=True, timeout=600)
    whole = json.loads((_latest(tmp_path / "a") / "metrics.json").read_text())

    env["CLASSLAB_RUNS"] = str(tmp_path / "b")
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = list((tmp_path / "b").glob("*/history.csv")) or list((tmp_path / "b").glob("*/last.pt"))
        if runs:
            ckpt = load_checkpoint(runs[0].parent / "last.pt") if (runs[0].parent / "last.pt").exists() else None
            if ckpt and ckpt["fit_state"]["epoch"] >= 20:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = _latest(tmp_path / "b")
    assert not (run / "metrics.json").exists()  # it really died before the end
    done = load_checkpoint(run / "last.pt")["fit_state"]["epoch"]
    assert 20 <= done < 150
    result = subprocess.run(_cli("train", "--resume", str(run)), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["accuracy"] == whole["accuracy"] and resumed["confusion_matrix"] == whole["confusion_matrix"]
    assert resumed["cross_entropy"] == pytest.approx(whole["cross_entropy"], rel=1e-6)
    assert len((run / "history.csv").read_text().splitlines()) == 151


def test_resume_with_different_config_names_the_keys(runs_dir, capsys):
    assert main(["train", "digits", "--model", "mlp", "--epochs", "2"]) == 0
    run = _latest(runs_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.5", "--optimizer", "sgd"]) == 2
    err = capsys.readouterr().err
    assert "lr: saved 0.001, given 0.5" in err and "optimizer" in err
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0  # more epochs is a valid continuation
    assert len((run / "history.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("model", ["mlp", "scratch-mlp"])
def test_a_batch_larger_than_the_training_split_takes_the_whole_split(model, runs_dir, capsys):
    """As PyTorch's DataLoader and Keras: the default batch of 64 on a small folder trains (one step an epoch),
    with a note, and the run records the batch it used."""
    args = ["train", "digits", "--model", model, "--epochs", "2", "--batch-size", "100000", "--max-train", "40"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "--batch-size 100000 is larger than the training split" in err
    run = sorted(runs_dir.glob("*-train-digits"))[-1]
    used = json.loads((run / "config.json").read_text())["options"]["train"]["batch_size"]
    with open(run / "split.csv", newline="") as f:
        assert used == sum(r["split"] == "train" for r in csv.DictReader(f)) < 64


@pytest.mark.parametrize("args, needle", [
    (["--model", "resnet9000"], "known models"),
    (["--model", "mlp", "--lr", "0"], "--lr must be positive"),
    (["--model", "mlp", "--lr", "-1"], "--lr must be positive"),
    (["--model", "vgg11"], "pass --image-size 32"),
    (["--model", "mlp", "--optimizer", "adamax"], "unknown --optimizer"),
    (["--model", "mlp", "--epochs", "0"], "--epochs"),
])
def test_bad_training_input_exits_2(args, needle, runs_dir, capsys):
    assert main(["train", "digits", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_nan_loss_stops_and_names_the_learning_rate(tmp_path):
    from classlab import ClasslabError, load_dataset
    from classlab.training import TrainConfig
    from classlab.training.engine import SplitTensors, fit
    from classlab.inference.preprocess import Preprocessing

    class Exploding(torch.nn.Module):  # finite for two steps, then NaN, as a diverging run does
        def __init__(self):
            super().__init__()
            self.linear, self.calls = torch.nn.Linear(64, 10), 0

        def forward(self, x):
            self.calls += 1
            out = self.linear(x.flatten(1))
            return out * float("nan") if self.calls > 30 else out

    ds = load_dataset("digits")
    data = SplitTensors(torch.from_numpy(ds.images), torch.from_numpy(ds.labels))
    pre = Preprocessing([8, 8], 1, [0.3], [0.37])
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.5, precision="fp32").validate()
    info = {"model_info": {"num_classes": 10}, "class_names": ds.class_names}
    with pytest.raises(ClasslabError, match=r"learning rate \(0.5\) is the likely cause; try --lr 0.05"):
        fit(Exploding(), data, SplitTensors(data.images[:0], data.labels[:0]), cfg, pre, tmp_path, num_classes=10,
            extra_state=info, progress=False)
    assert (tmp_path / "last.pt").is_file()  # epoch 1 finished: the last good checkpoint is kept


def test_python_api_predict_and_evaluate_agree_with_the_run(tmp_path, runs_dir, capsys):
    import classlab
    import numpy as np
    from PIL import Image

    run = classlab.train("digits", "mlp", epochs=4, progress=False)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert run.evaluate().accuracy == pytest.approx(metrics["accuracy"])
    # Files go through the saved preprocessing and give what the arrays give.
    ds = classlab.load_dataset("digits")
    folder = tmp_path / "new"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(ds.images[i, :, :, 0]).save(folder / f"{i}.png")
    Image.fromarray(np.repeat(ds.images[5], 4, 0).repeat(4, 1).repeat(3, 2)).save(folder / "big_rgb.png")
    (folder / "broken.png").write_text("no")
    (folder / ".hidden.png").write_text("no")
    from_files = run.predict(folder, top_k=2)
    from_arrays = run.predict(ds.images[:5], top_k=2)
    for f, a in zip(from_files[:5], from_arrays):  # same labels; probabilities up to batch-size float noise
        assert [label for label, _ in f["top"]] == [label for label, _ in a["top"]]
        assert [p for _, p in f["top"]] == pytest.approx([p for _, p in a["top"]], abs=1e-5)
    assert len(from_files) == 6 and "broken.png" in capsys.readouterr().err
    assert from_files[5]["top"][0][0] == run.predict(ds.images[5:6])[0]["top"][0][0]  # resized, made gray
    assert main(["predict", str(run.run_dir), str(folder / "0.png"), "--top-k", "3",
                 "--output", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(folder / "0.png")) and (tmp_path / "p.csv").read_text().startswith("input,label1,prob1")
    assert main(["predict", str(run.run_dir), str(tmp_path / "missing.png")]) == 2


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    from classlab import ClasslabError, load_dataset
    from classlab.training import TrainConfig
    from classlab.training.engine import SplitTensors, fit
    from classlab.inference.preprocess import Preprocessing

    class Greedy(torch.nn.Linear):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    ds = load_dataset("digits")
    data = SplitTensors(torch.from_numpy(ds.images), torch.from_numpy(ds.labels))
    cfg = TrainConfig(epochs=1, batch_size=128, precision="fp32").validate()
    with pytest.raises(ClasslabError, match="memory at --batch-size 128; try --batch-size 64"):
        fit(Greedy(64, 10), data, SplitTensors(data.images[:0], data.labels[:0]), cfg,
            Preprocessing([8, 8], 1, [0.3], [0.37]), tmp_path, num_classes=10, progress=False)


@pytest.mark.slow
def test_compile_flag_trains(runs_dir, capsys):
    assert main(["train", "digits", "--model", "mlp", "--epochs", "5", "--compile", "--precision", "fp32"]) == 0
    assert json.loads((_latest(runs_dir) / "metrics.json").read_text())["accuracy"] > 0.85


@pytest.fixture
def seeded_torch():
    """torch's global generator seeded for one test and restored after it: MixUp and CutMix draw from it, and
    CutMix draws an empty box (the batch unchanged, as it should be) for about 1 seed in 60, which made the
    test below fail now and then depending on which tests ran before it in the same worker."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        yield


def test_augmentations_change_pixels_keep_shapes_and_ranges(seeded_torch):
    from classlab.training.augment import augment, mix
    from classlab.training.config import AUGMENTS

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    for kind in AUGMENTS:
        if kind in ("mixup", "cutmix"):
            out, soft = mix(x, torch.arange(32) % 4, kind, 4)
            assert soft.shape == (32, 4) and torch.allclose(soft.sum(1), torch.ones(32))
        else:
            out = augment(x.clone(), kind, g)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, kind
        assert torch.equal(out, x) == (kind == "none"), kind
    # Translation really shifts content: a single bright pixel moves by at most 4 pixels.
    dot = torch.zeros(64, 1, 16, 16)
    dot[:, :, 8, 8] = 1
    moved = augment(dot, "crop", g)
    ys, xs = torch.nonzero(moved[:, 0] == 1, as_tuple=True)[1:]
    assert (ys - 8).abs().max() <= 4 and (xs - 8).abs().max() <= 4 and len(set((ys * 16 + xs).tolist())) > 5


@pytest.mark.parametrize("augment", ["flip-crop-jitter", "randaugment", "mixup", "cutmix"])
def test_every_augmentation_preset_trains(augment, runs_dir, capsys):
    assert main(["train", "digits", "--image-size", "16", "--model", "cnn", "-o", "filters=16,32", "-o", "dense=64",
                 "--epochs", "6", "--lr", "0.003", "--augment", augment]) == 0
    # Regularisers slow early progress (and flips hurt digits); 4x chance after 6 epochs shows learning.
    assert json.loads((_latest(runs_dir) / "metrics.json").read_text())["accuracy"] > 0.4


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    """torchrun, 2 CPU processes, gloo: each rank takes every other item of the shared shuffled order,
    so 2 x 32 covers the same items per step as 1 x 64, and DDP's averaged gradients equal the
    single-process ones: the runs must agree (up to float summation order)."""
    common = ["train", "digits", "--model", "mlp", "--epochs", "3", "--max-train", "1280", "--precision", "fp32",
              "--deterministic"]
    env = {**os.environ, "CLASSLAB_RUNS": str(tmp_path / "one"), "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(*common, "--batch-size", "64"), env=env, check=True, capture_output=True, timeout=600)
    env["CLASSLAB_RUNS"] = str(tmp_path / "two")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "classlab", *common,
                             "--batch-size", "32"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "two").iterdir())
    assert len(runs) == 1  # rank 0 alone made and wrote the run
    two, one = runs[0], _latest(tmp_path / "one")
    for name in ("metrics.json", "history.csv", "best.pt", "last.pt", "report.md", "split.csv"):
        assert (two / name).is_file(), name
    assert json.loads((two / "config.json").read_text())["options"]["world_size"] == 2
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    assert m2["accuracy"] == m1["accuracy"] and m2["cross_entropy"] == pytest.approx(m1["cross_entropy"], rel=1e-3)
    w1, w2 = (load_checkpoint(r / "last.pt")["model"] for r in (one, two))
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)


def test_tensorboard_logs_every_epoch(runs_dir, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["train", "digits", "--model", "mlp", "--epochs", "3", "--tensorboard"]) == 0
    events = EventAccumulator(str(_latest(runs_dir) / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2, 3]


def test_folders_too_large_for_memory_stream_and_train_identically(tmp_path):
    """A zip of images decoded lazily by DataLoader workers trains to exactly the in-memory result."""
    import zipfile

    import classlab
    from PIL import Image
    from classlab.data.options import DataOptions
    from classlab.commands.train import run_train
    from classlab.training import TrainConfig

    ds = classlab.load_dataset("digits")
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(600):
            buf = __import__("io").BytesIO()
            Image.fromarray(ds.images[i, :, :, 0]).save(buf, format="PNG")
            z.writestr(f"digits/{ds.labels[i]}/{i:04d}.png", buf.getvalue())
    cfg = dict(model="mlp", epochs=3, batch_size=32, precision="fp32", deterministic=True, augment="crop")
    eager = run_train(DataOptions(data=str(archive)), TrainConfig(**cfg), tmp_path / "eager", progress=False)
    lazy = run_train(DataOptions(data=str(archive), max_memory_mb=0), TrainConfig(**cfg), tmp_path / "lazy",
                     progress=False)
    assert "decoded lazily" in (lazy.run_dir / "report.md").read_text()
    assert lazy.accuracy == eager.accuracy
    assert [h["train_loss"] for h in lazy.history] == pytest.approx([h["train_loss"] for h in eager.history])
    # lr-find decodes only the images its steps draw, not the whole training split (counted after loading,
    # which itself reads every file once for the leak check)
    from classlab.data import dataset as lazy_images
    from classlab.commands import lr_find as lr_find_module

    decoded = []
    real_get, real_load = lazy_images.LazyImages.__getitem__, lr_find_module.load_and_split
    def counting(self, key):
        out = real_get(self, key)
        decoded.append(len(out) if getattr(out, "ndim", 0) == 4 else 1)
        return out
    def load_then_count(opts):
        loaded = real_load(opts)
        decoded.clear()
        return loaded
    lazy_images.LazyImages.__getitem__ = counting
    lr_find_module.load_and_split = load_then_count
    try:
        found = lr_find_module.lr_find(DataOptions(data=str(archive), max_memory_mb=0),
                                       TrainConfig(model="mlp", batch_size=4), steps=10, runs_dir=tmp_path / "lr")
    finally:
        lazy_images.LazyImages.__getitem__, lr_find_module.load_and_split = real_get, real_load
    assert found.details["steps_run"] >= 5 and 0 < sum(decoded) <= 40


def test_fastnet_patch_whitening_decorrelates_and_freezes_the_stem():
    import torch

    from classlab.models import create_model

    model = create_model("fastnet", 10, 3, 32)
    x = torch.randn(400, 3, 32, 32)
    x[:, 1] = 0.9 * x[:, 0] + 0.1 * x[:, 1]  # strongly correlated channels, as in real photos
    model.init_from_data(x)
    w = model.stem[0].weight
    z = torch.nn.functional.conv2d(x, w[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(z.T)
    off_diagonal = cov - torch.diag(cov.diag())
    assert off_diagonal.abs().max() < 1e-3  # decorrelated
    assert cov.diag().min() > 0.8 and cov.diag().max() < 1.001  # unit variance (eps damps the faintest direction)
    assert torch.equal(w[12:], -w[:12]) and not w.requires_grad


def test_tta_scores_with_mirror_images_and_predict_reuses_it(runs_dir, capsys):
    import classlab
    import numpy as np
    import torch

    from classlab.inference.tta import forward_tta

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.randn(4, 1, 3, 4)
    by_hand = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(forward_tta(model, x, True).softmax(1), by_hand, atol=1e-6)
    assert torch.equal(forward_tta(model, x, False), model(x))
    run = classlab.train("digits", "cnn", epochs=1, tta=True, progress=False)
    assert run.trained().tta
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert run.evaluate().accuracy == pytest.approx(metrics["accuracy"])
    ds = classlab.load_dataset("digits")
    plain = classlab.TrainedNetwork.load(run.run_dir)
    plain.tta = False
    assert not np.allclose(run.predict_proba(ds.images[:20]), plain.predict_proba(ds.images[:20]))
    # exports carry the averaging too: the bundle answers as predict does
    from classlab.trained.export import export_run, run_exported
    from classlab.inference.preprocess import to_input

    x = to_input(torch.from_numpy(ds.images[:20]), run.trained().preprocessing).numpy()
    for fmt in ("onnx", "torchscript"):
        bundle = export_run(run.run_dir, fmt)
        probs = torch.from_numpy(run_exported(bundle["model"], x)).softmax(1).numpy()
        assert np.allclose(probs, run.predict_proba(ds.images[:20]), atol=1e-4)
        contract = json.loads((bundle["bundle"] / "preprocessing.json").read_text())
        assert "averaged over the test-time augmentation views (flip)" in contract["output"]


def test_flip_translate_tta_weighs_six_views_by_hand():
    import torch

    from classlab.inference.tta import forward_tta

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 6, 4))
    x = torch.randn(3, 3, 5, 6)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :5, :6], padded[..., 2:, 2:]
    assert torch.equal(up_left[..., 1:, 1:], x[..., :-1, :-1])  # a one-pixel shift
    probs = lambda v: model(v).softmax(1)
    pair = lambda v: probs(v) + probs(v.flip(-1))
    by_hand = pair(x) / 4 + (pair(up_left) + pair(down_right)) / 8
    assert torch.allclose(forward_tta(model, x, "flip-translate").softmax(1), by_hand, atol=1e-6)
    assert torch.allclose(forward_tta(model, x, "flip").softmax(1), pair(x) / 2, atol=1e-6)
    assert torch.equal(forward_tta(model, x, "none"), model(x))


def test_fastnet_shifts_learn_faster_under_sgd_only_and_convs_start_as_identity():
    import torch

    from classlab.models import create_model
    from classlab.training import TrainConfig

    model = create_model("fastnet", 10, 3, 32)
    conv = model.stages[1][0]  # 64 -> 256 channels
    x = torch.randn(2, 64, 8, 8)
    assert torch.allclose(torch.nn.functional.conv2d(x, conv.weight, padding=1)[:, :64], x)  # dirac on the first 64
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    sgd = model.param_groups(TrainConfig(optimizer="nesterov", lr=0.2, weight_decay=5e-4))
    shifts = {id(m.bias) for m in norms}
    assert {id(p) for p in sgd[1]["params"]} == shifts and not shifts & {id(p) for p in sgd[0]["params"]}
    assert sgd[1]["lr"] == pytest.approx(0.2 * 64) and sgd[1]["lr"] * sgd[1]["weight_decay"] == pytest.approx(0.2 * 5e-4)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in sgd) == len(trainable)
    adam = model.param_groups(TrainConfig(optimizer="adam"))
    assert len(adam) == 1 and len(adam[0]["params"]) == len(trainable)


def test_crop_padding_bounds_the_translation_and_zero_turns_it_off():
    import torch

    from classlab.training.augment import augment

    x = torch.rand(64, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, "crop", g, pad=0), x)
    shifted = augment(x, "crop", g, pad=1)
    # every image moved by at most one pixel: its centre 10x10 appears in the shifted image's 12x12
    for a, b in zip(x, shifted):
        core = a[:, 1:-1, 1:-1]
        assert any(torch.equal(b[:, dy:dy + 10, dx:dx + 10], core) for dy in range(3) for dx in range(3))
    with pytest.raises(ClasslabError, match="crop-padding"):
        TrainConfig(crop_padding=-1).validate()
    assert TrainConfig(tta=True).validate().tta == "flip"  # runs saved before tta levels
    with pytest.raises(ClasslabError, match="tta"):
        TrainConfig(tta="rotate").validate()


def test_lookahead_averages_every_fifth_step_by_hand():
    import torch

    from classlab.training.engine import Lookahead

    model = torch.nn.Linear(2, 1, bias=False)
    la = Lookahead(model, total_steps=20, every=5, decay=0.9, start=0.25)
    la.begin_epoch(0)
    assert la.average is None  # not yet in the averaged part of training
    la.begin_epoch(5)
    avg = model.weight.detach().clone()
    for step in range(6, 11):
        with torch.no_grad():
            model.weight.add_(1.0)  # stands in for an optimizer step
        la.step(step)
        if step == 10:
            rho = 0.9 ** 5 * (10 / 20) ** 3
            avg = rho * avg + (1 - rho) * (avg + 5.0)
            assert torch.allclose(model.weight, avg) and torch.allclose(la.average[0], avg)
    with torch.no_grad():
        model.weight.add_(1.0)
    la.end_epoch(11)  # the epoch's last step, off the 5-step cadence: one more update, the step not lost
    rho = 0.9 ** 5 * (11 / 20) ** 3
    avg = rho * avg + (1 - rho) * (avg + 1.0)
    assert torch.allclose(model.weight, avg) and torch.allclose(la.average[0], avg)  # the epoch ends on the average
    la.end_epoch(15)  # an epoch whose last step made the update: nothing more
    assert torch.allclose(model.weight, avg)


def test_lookahead_run_stopped_after_an_epoch_resumes_to_the_same_result(runs_dir, capsys, monkeypatch):
    args = ["train", "digits", "--model", "mlp", "--epochs", "4", "--optimizer", "nesterov", "--lr", "0.05",
            "--schedule", "cosine", "--lookahead", "--deterministic", "--precision", "fp32"]
    assert main(args) == 0
    whole = _latest(runs_dir)
    assert interrupted_train(args, monkeypatch, after_epoch=2) == 130  # "interrupted"
    part = _latest(runs_dir)
    assert load_checkpoint(part / "last.pt")["fit_state"]["epoch"] == 2
    assert main(["train", "--resume", str(part)]) == 0
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (whole, part))
    assert a["accuracy"] == b["accuracy"] and a["cross_entropy"] == pytest.approx(b["cross_entropy"], rel=1e-6)
    assert load_checkpoint(whole / "last.pt")["config"]["lookahead"] is True


def test_fastnet_resumes_with_its_frozen_stem(runs_dir, capsys):
    assert main(["train", "digits", "--model", "fastnet", "--image-size", "16", "--epochs", "1",
                 "--batch-size", "128"]) == 0
    run = _latest(runs_dir)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert len((run / "history.csv").read_text().splitlines()) == 3


def test_precomputed_views_train_one_version_per_row_and_average_at_test_time(tmp_path):
    """SplitTensors.views (cached features of mirror images, in transfer): each epoch trains on exactly one
    version of every row, drawn from the engine's generator (so resuming draws the same), and TTA scoring
    averages the versions' probabilities."""
    from classlab.training import TrainConfig
    from classlab.checkpoint import load_checkpoint
    from classlab.inference.predict import predict_batches
    from classlab.training.engine import SplitTensors, fit
    from classlab.inference.preprocess import Preprocessing

    class Recorder(torch.nn.Linear):
        seen: list

        def forward(self, x):
            if self.training:
                self.seen.append(x.detach().clone())
            return super().forward(x)

    rows = torch.arange(1, 65, dtype=torch.float32)[:, None] * torch.tensor([1.0, 0.5, 0.25, 2.0]) / 64
    labels = torch.arange(64) % 3
    data = SplitTensors(rows, labels, -rows[None])  # one view: the rows negated
    empty = SplitTensors(rows[:0], labels[:0])
    pre, info = Preprocessing.for_features(4), {"model_info": {"num_classes": 3}}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1, precision="fp32", seed=3).validate()

    def model():
        torch.manual_seed(0)
        m = Recorder(4, 3)
        m.seen = []
        return m
    whole = model()
    fit(whole, data, empty, cfg, pre, tmp_path / "whole", extra_state=info, progress=False)
    for epoch in whole.seen[:4], whole.seen[4:]:
        x = torch.cat(epoch)
        ids = (x[:, 0].abs() * 64).round().long()  # which row: |first value| x 64
        assert sorted(ids.tolist()) == list(range(1, 65))  # every row once, in one of its versions
        assert 16 <= int((x[:, 0] < 0).sum()) <= 48  # both versions drawn
    # Interrupted after epoch 1 and resumed: the same draws, the same weights.
    part = model()
    fit(part, data, empty, TrainConfig(**{**cfg.to_dict(), "epochs": 1}).validate(), pre, tmp_path / "part", extra_state=info,
        progress=False)
    resumed = model()
    fit(resumed, data, empty, cfg, pre, tmp_path / "part", extra_state=info, progress=False,
        resume=load_checkpoint(tmp_path / "part" / "last.pt"))
    assert torch.equal(torch.cat(resumed.seen), torch.cat(whole.seen[4:]))
    assert torch.allclose(resumed.weight, whole.weight)
    # Scoring: with TTA the log of the versions' averaged probabilities; without, the rows alone.
    with torch.no_grad():
        by_hand = ((whole(rows).softmax(1) + whole(-rows).softmax(1)) / 2).log()
        plain = whole(rows)
    assert torch.allclose(predict_batches(whole, data.eval_batches(10), pre, tta="flip"), by_hand, atol=1e-6)
    assert torch.allclose(predict_batches(whole, data.eval_batches(10), pre), plain, atol=1e-6)


def test_volumes_train_in_fp32_on_the_cpu_and_a_fixed_seed_repeats(tmp_path):
    """PyTorch's CPU bf16 Conv3d backward gives a different, sometimes NaN, weight gradient from run to run
    (it ended fixed-seed cnn3d runs in "loss became nan"); volumes therefore train in fp32 on the CPU, and
    the same seed gives the same run."""
    from classlab.training.precision import use_bf16

    assert use_bf16(TrainConfig(), torch.device("cpu"), volumes=True) is False
    assert use_bf16(TrainConfig(precision="fp32"), torch.device("cpu")) is False
    from conftest import random_volumes_npz

    random_volumes_npz(tmp_path / "vol.npz")
    import classlab

    runs = [classlab.train(str(tmp_path / "vol.npz"), "cnn3d", epochs=2, batch_size=8, progress=False,
                           runs_dir=tmp_path / "runs") for _ in range(3)]
    losses = [[h["train_loss"] for h in run.history] for run in runs]
    assert all(np.isfinite(losses).ravel()) and losses[0] == losses[1] == losses[2]
    assert json.loads((runs[0].run_dir / "metrics.json").read_text())["train"]["bf16"] is False


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    from classlab.training.augment import AlternatingFlip, augment

    plan = AlternatingFlip(1000, seed=3)
    idx = torch.arange(1000)
    even, odd = plan(idx, 0), plan(idx, 1)
    assert torch.equal(even, ~odd) and torch.equal(plan(idx, 2), even)  # complementary, then repeats
    assert 400 < int(even.sum()) < 600 and torch.equal(AlternatingFlip(1000, seed=3)(idx, 0), even)  # seeded
    assert not torch.equal(AlternatingFlip(1000, seed=4)(idx, 0), even)
    x = torch.rand(6, 3, 8, 8)
    flips = torch.tensor([True, False, True, False, False, True])
    out = augment(x, "flip-crop", torch.Generator().manual_seed(0), pad=0, flips=flips)
    for i in range(6):  # exactly the images asked for are mirrored, whatever the generator says
        assert torch.equal(out[i], x[i].flip(-1) if flips[i] else x[i])


def test_alternate_flip_run_stopped_after_an_epoch_resumes_to_the_same_result(runs_dir, capsys, monkeypatch):
    args = ["train", "digits", "--model", "cnn", "--epochs", "3", "--augment", "flip-crop", "--alternate-flip",
            "--deterministic", "--precision", "fp32"]
    assert main(args) == 0
    whole = _latest(runs_dir)
    assert interrupted_train(args, monkeypatch, after_epoch=1) == 130
    part = _latest(runs_dir)
    assert main(["train", "--resume", str(part)]) == 0
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (whole, part))
    assert a["accuracy"] == b["accuracy"] and a["cross_entropy"] == pytest.approx(b["cross_entropy"], rel=1e-6)
    assert load_checkpoint(whole / "last.pt")["config"]["alternate_flip"] is True
    assert main(["train", "digits", "--alternate-flip"]) == 2  # without a flip augmentation: refused, one line
    assert "--alternate-flip decides" in capsys.readouterr().err


def test_fastnet_whitening_bias_trains_for_its_epochs_then_stays(tmp_path):
    from classlab.inference.preprocess import Preprocessing
    from classlab.models import create_model
    from classlab.training import TrainConfig
    from classlab.training.engine import Callback, SplitTensors, fit

    class Snapshots(Callback):
        biases: list = []

        def after_epoch(self, trainer, row):
            self.biases.append(trainer.model.stem[0].bias.detach().clone())

    torch.manual_seed(0)
    images = torch.randint(0, 256, (256, 16, 16, 3), dtype=torch.uint8)
    data = SplitTensors(images, torch.arange(256) % 4)
    model = create_model("fastnet", 4, 3, 16, width=0.25, whiten_bias_epochs=2)
    start = model.stem[0].bias.detach().clone()
    cfg = TrainConfig(model="fastnet", epochs=4, batch_size=64, lr=0.05, optimizer="nesterov", weight_decay=5e-4,
                      precision="fp32").validate()
    fit(model, data, SplitTensors(images[:0], data.labels[:0]), cfg, Preprocessing([16, 16], 3, [0.5] * 3, [0.25] * 3),
        tmp_path, num_classes=4, progress=False, callbacks=[Snapshots()])
    b = Snapshots.biases
    assert not torch.equal(b[0], start) and not torch.equal(b[1], b[0])  # trains in epochs 1 and 2
    assert torch.equal(b[2], b[1]) and torch.equal(b[3], b[1])  # then frozen, weight decay included
    with pytest.raises(ClasslabError, match="whiten_bias_epochs"):
        create_model("fastnet", 4, 3, 16, whiten_bias_epochs=-1)


def test_fastnet_batch_norm_epsilon_is_an_option():
    from classlab.models import create_model

    def eps(model):
        return {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps(create_model("fastnet", 4, 3, 16, width=0.25)) == {1e-5}
    assert eps(create_model("fastnet", 4, 3, 16, width=0.25, bn_eps=1e-12)) == {1e-12}
    for bad in (0, -1e-3, 1.5, True, "1e-12"):
        with pytest.raises(ClasslabError, match="bn_eps"):
            create_model("fastnet", 4, 3, 16, bn_eps=bad)


def test_triangular_schedule_rises_from_a_fifth_then_falls_to_seven_hundredths():
    """The speed runs' triangle (airbench): 0.2 -> 1 over the first 23% of steps, then linearly to 0.07."""
    from classlab.training.optim import make_schedule

    cfg = TrainConfig(epochs=10, schedule="triangular", optimizer="sgd", lr=2.0).validate()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = make_schedule(cfg, optimizer, steps_per_epoch=10)  # 100 steps, peak at step 23
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.4) and rates[23] == pytest.approx(2.0) and max(rates) == rates[23]
    assert rates[11] == pytest.approx(2.0 * (0.2 + 0.8 * 11 / 23))
    assert rates[99] == pytest.approx(2.0 * (1 - 0.93 * 76 / 77))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * 0.07)  # after the last step
    assert all(a < b for a, b in zip(rates[:23], rates[1:24])) and all(a > b for a, b in zip(rates[23:], rates[24:]))
    cfg = TrainConfig(epochs=10, schedule="triangular", warmup_epochs=5).validate()  # a given rise is kept
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = make_schedule(cfg, optimizer, steps_per_epoch=10)
    assert [schedule.lr_lambdas[0](s) for s in (0, 25, 50, 100)] == pytest.approx([0.2, 0.6, 1.0, 0.07])


def test_streamed_split_decodes_a_single_batch_without_starting_workers(monkeypatch):
    import torch.utils.data as data

    from classlab.training.batches import StreamedSplit

    images = np.arange(10 * 4 * 4 * 1, dtype=np.uint8).reshape(10, 4, 4, 1)
    split = StreamedSplit(images, torch.arange(10), torch.device("cpu"), workers=2)
    started, real = [], data.DataLoader
    monkeypatch.setattr(data, "DataLoader", lambda *a, **kw: started.append(kw["num_workers"]) or real(*a, **kw))
    (idx, x), = list(split.batches(torch.tensor([7, 2, 5]), 8))  # the precision probe's one batch
    assert started == [0] and idx.tolist() == [7, 2, 5] and np.array_equal(x.numpy(), images[[7, 2, 5]])
    batches = list(split.batches(torch.arange(10), 4))  # an epoch: workers decode ahead
    assert started[-1] == 2 and torch.equal(torch.cat([x for _, x in batches]), torch.from_numpy(images))


def test_balanced_class_weight_and_sampler_lift_the_rare_classes(tmp_path):
    """On a 150:10:10 training split an unweighted MLP recalls few of the two rare digits; --class-weight
    balanced (inverse-frequency weights, scikit-learn's "balanced") and --sampler balanced recall far more."""
    import classlab

    tree = imbalanced_digits_tree(tmp_path / "tree", {0: 150, 1: 10, 7: 10})
    rare_recall = {}
    for option in (None, "class_weight", "sampler"):
        run = classlab.train(str(tree), "mlp", epochs=8, progress=False, runs_dir=tmp_path / "runs",
                             **({option: "balanced"} if option else {}))
        recall = dict(zip(run.evaluation.class_names, (row["recall"] for row in run.metrics["per_class"])))
        rare_recall[option] = (recall["1"] + recall["7"]) / 2
        # the plain run says the classes are imbalanced and what to do; a balanced one has nothing to add
        advice = "imbalanced 15.0 : 1 in the training split ('0' 135, '1' 9 images)"
        assert (advice in run.report.read_text()) == (option is None)
    assert rare_recall["class_weight"] > rare_recall[None] + 0.1 and rare_recall["sampler"] > rare_recall[None] + 0.1
