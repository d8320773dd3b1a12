"""--precision auto on the CPU: the faster of fp32 and bf16, timed on a copy of the model before the run."""

import json

import pytest
import torch

from classlab.checkpoint import load_checkpoint
from classlab.cli import main
from classlab.training import precision
from conftest import interrupted_train


def _bf16_cpu() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


needs_bf16 = pytest.mark.skipif(not _bf16_cpu(), reason="this CPU has no bf16 support in oneDNN")


def _latest(runs_dir):
    return sorted(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)[-1]


def test_measuring_leaves_the_model_as_it_was_and_picks_the_faster(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                torch.nn.LazyLinear(4))
    x, y = torch.randn(16, 3, 12, 12), torch.arange(16) % 4
    model(x)  # materialise the lazy layer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = torch.nn.functional.cross_entropy
    timed = []

    def fake_seconds(m, x, t, c, bf16):
        timed.append(bf16)
        return times[bf16]
    monkeypatch.setattr(precision, "step_seconds", fake_seconds)
    # a step this small is not worth timing in bf16: the static choice (bf16 where supported) stands
    times = {False: 0.01, True: 0.001}
    assert precision.measured_bf16(model, x, y, loss) == (True, "bf16 (an fp32 step takes 10 ms: not worth measuring)")
    assert timed == [False]
    times = {False: 0.30, True: 0.20}
    assert precision.measured_bf16(model, x, y, loss) == (True, "bf16 (measured a training step of batch 16: "
                                                                "fp32 0.300 s, bf16 0.200 s)")
    times[True] = 0.30  # a tie goes to fp32, the more exact
    assert precision.measured_bf16(model, x, y, loss)[0] is False
    # the real timing (both ways) trains a copy: weights, BatchNorm statistics, memory format and grads stay
    monkeypatch.undo()
    monkeypatch.setattr(precision, "MEASURE_FROM_S", 0.0)
    choice, account = precision.measured_bf16(model, x, y, loss)
    assert account.startswith(("bf16 (measured", "fp32 (measured")) and choice == account.startswith("bf16")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].weight.is_contiguous() and model[0].weight.grad is None


@needs_bf16
def test_auto_trains_in_the_measured_precision_and_resume_keeps_it(runs_dir, capsys, monkeypatch):
    monkeypatch.setattr(precision, "MEASURE_FROM_S", 0.0)  # measure even digits' tiny steps
    monkeypatch.setattr(precision, "step_seconds", lambda m, x, t, c, bf16: 0.2 if bf16 else 0.1)
    args = ["train", "digits", "--model", "cnn", "--epochs", "2", "--image-size", "8"]
    assert main(args) == 0
    assert "precision (auto): fp32 (measured a training step of batch 64: fp32 0.100 s, bf16 0.200 s)" \
        in capsys.readouterr().out
    run = _latest(runs_dir)
    assert json.loads((run / "metrics.json").read_text())["train"]["bf16"] is False
    assert load_checkpoint(run / "last.pt")["fit_state"]["precision"] == "fp32"
    assert interrupted_train(args, monkeypatch, after_epoch=1) == 130
    capsys.readouterr()
    part = _latest(runs_dir)
    monkeypatch.setattr(precision, "step_seconds", lambda m, x, t, c, bf16: 0.1 if bf16 else 0.2)  # now bf16 wins
    assert main(["train", "--resume", str(part)]) == 0
    assert "precision (auto)" not in capsys.readouterr().out  # not measured again: the run keeps fp32
    assert load_checkpoint(part / "last.pt")["fit_state"]["precision"] == "fp32"
    # a new run measures afresh; an explicit --precision is never second-guessed
    assert main(args) == 0
    assert "precision (auto): bf16 (measured" in capsys.readouterr().out
    assert json.loads((_latest(runs_dir) / "metrics.json").read_text())["train"]["bf16"] is True
    assert main(args + ["--precision", "fp32"]) == 0
    assert "precision (auto)" not in capsys.readouterr().out
    assert json.loads((_latest(runs_dir) / "metrics.json").read_text())["train"]["bf16"] is False
