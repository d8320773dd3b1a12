"""Transfer learning: weights resolution offline, the preprocessing contract, cached features, fine-tuning,
run-as-backbone, and every bad input the issue names. The real MobileNetV2 weights come from
../shared/weights through a temporary TORCH_HOME; nothing here touches the network."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from classlab import ClasslabError, TrainedNetwork
from classlab.checkpoint import load_checkpoint
from classlab.cli import main
from classlab.models import create_model
from classlab.models.transfer import adapt_first_conv, build_backbone
from classlab.api import transfer
from classlab.backbones.plan import plan_backbone
from classlab.backbones.torchvision_source import resolve

from conftest import DATA, MOBILENET, imbalanced_digits_tree, need, png_bytes


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "empty-torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


DIGITS_32 = dict(image_size=32, head_epochs=3, progress=False)


# -- weights, offline --------------------------------------------------------------------------------

def test_weights_come_from_the_hub_cache_with_their_own_preprocessing(torch_home):
    w = resolve("mobilenet_v2")
    assert w.name == "MobileNet_V2_Weights.IMAGENET1K_V1"  # the cached version, though V2 is the default
    assert w.mean == [0.485, 0.456, 0.406] and w.std == [0.229, 0.224, 0.225] and w.crop_size == 224
    assert "features.0.0.weight" in w.state and w.state["classifier.1.weight"].shape == (1000, 1280)


def test_missing_weights_offline_name_the_file_and_folder(empty_torch_home, monkeypatch):
    monkeypatch.setenv("CLASSLAB_OFFLINE", "1")
    with pytest.raises(ClasslabError) as e:
        resolve("mobilenet_v2")
    msg = str(e.value)
    assert "mobilenet_v2-7ebf99e0.pth" in msg and str(empty_torch_home / "hub" / "checkpoints") in msg


def test_unreachable_download_fails_fast_with_the_same_advice(empty_torch_home, monkeypatch):
    import socket
    import time

    with socket.socket() as s:  # a port on 127.0.0.1 with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CLASSLAB_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}/models")
    t = time.perf_counter()
    with pytest.raises(ClasslabError, match="mobilenet_v2-7ebf99e0.pth.*hub/checkpoints"):
        resolve("mobilenet_v2", progress=False)
    assert time.perf_counter() - t < 60  # a guard against hanging on the closed port, not a speed bound


def test_weights_download_from_a_mirror_checked_by_their_hash(empty_torch_home, monkeypatch, server):
    need(MOBILENET)
    root, url = server
    shutil.copyfile(MOBILENET, root / MOBILENET.name)
    monkeypatch.setenv("CLASSLAB_WEIGHTS_MIRROR", url)
    w = resolve("mobilenet_v2", "IMAGENET1K_V1", progress=False)
    assert w.file == empty_torch_home / "hub" / "checkpoints" / MOBILENET.name and w.file.is_file()
    assert w.name.endswith("IMAGENET1K_V1")
    (root / MOBILENET.name).write_bytes(MOBILENET.read_bytes()[:-10] + b"0123456789")  # corrupt copy
    w.file.unlink()
    with pytest.raises(ClasslabError, match="corrupt"):
        resolve("mobilenet_v2", "IMAGENET1K_V1", progress=False)
    assert not w.file.exists()


def test_truncated_weights_file(tmp_path, empty_torch_home):
    need(MOBILENET)
    cut = tmp_path / "mobilenet_v2-b0353104.pth"
    cut.write_bytes(MOBILENET.read_bytes()[: 1 << 20])
    with pytest.raises(ClasslabError, match="damaged or truncated"):
        resolve("mobilenet_v2", str(cut))


def test_weights_of_another_architecture_say_which_keys_mismatch(tmp_path, empty_torch_home):
    other = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", 1000, 3, 224).state_dict(), other)
    plan = plan_backbone("mobilenet_v2", str(other))
    with pytest.raises(ClasslabError, match=r"does not fit.*missing keys \(\d+\): features\.0\.0\.weight.*unexpected"):
        plan.backbone_only(3)


def test_unknown_backbone_lists_some(empty_torch_home):
    with pytest.raises(ClasslabError, match="unknown backbone 'mobilenet_v9'.*mobilenet_v2, resnet18"):
        plan_backbone("mobilenet_v9")
    assert main(["transfer", "digits", "--backbone", "no_such_net"]) == 2


# -- architecture and mechanics, random weights --------------------------------------------------------

@pytest.mark.parametrize("name,width,blocks", [("resnet18", 512, 10), ("efficientnet_b0", 1280, 18),
                                               ("vgg16", 4096, 15), ("resnet50", 2048, 18)])
def test_other_backbones_random_weights(name, width, blocks):
    big = name in ("vgg16", "resnet50")
    with torch.device("meta" if big else "cpu"):  # the two large ones: structure only
        net = create_model("transfer", 5, 3, 64, backbone=name, dense=16)
    assert net.width == width and len(net.blocks()) == blocks
    assert net.freeze("last:2") == 2
    trainable = [n for n, p in net.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(p.requires_grad for p in net.blocks()[-1].parameters())
    assert not any(p.requires_grad for p in net.blocks()[0].parameters())
    if not big:
        assert net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_unfreeze_more_blocks_than_the_backbone_has():
    net = create_model("transfer", 3, 3, 32, backbone="mobilenet_v2")
    assert len(net.blocks()) == 19  # MobileNetV2's feature blocks
    with pytest.raises(ClasslabError, match="more blocks than the backbone has \\(19\\).*last:1 to last:19"):
        net.freeze("last:20")
    with pytest.raises(ClasslabError, match="'all', 'half' or 'last:N'"):
        net.freeze("first:2")
    # the default: the later half, rounded up; the early blocks stay frozen
    assert net.freeze("half") == 10
    assert not any(p.requires_grad for p in net.blocks()[8].parameters())
    assert all(p.requires_grad for b in net.blocks()[9:] for p in b.parameters())
    from classlab.backbones.config import TransferConfig

    assert TransferConfig().unfreeze == "half"


def test_summed_first_conv_equals_replicated_grayscale():
    torch.manual_seed(0)
    rgb, _ = build_backbone("resnet18", None, 3)
    gray = build_backbone("resnet18", None, 3)[0]
    gray.load_state_dict(rgb.state_dict())
    adapt_first_conv(gray, 1)
    assert gray.conv1.weight.shape[1] == 1
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(F.conv2d(x, gray.conv1.weight, stride=2, padding=3),
                          F.conv2d(x.expand(-1, 3, -1, -1), rgb.conv1.weight, stride=2, padding=3), atol=1e-5)


def test_frozen_batchnorm_keeps_running_statistics():
    net = create_model("transfer", 3, 3, 32, backbone="resnet18", bn="frozen")
    net.freeze("all")
    before = net.backbone.bn1.running_mean.clone()
    net.train()
    net(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(before, net.backbone.bn1.running_mean) and not net.backbone.bn1.training
    net2 = create_model("transfer", 3, 3, 32, backbone="resnet18", bn="train").train()
    net2(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not torch.equal(before, net2.backbone.bn1.running_mean)


# -- runs with the real MobileNetV2 weights ------------------------------------------------------------

def test_image_size_below_the_backbones_minimum(torch_home, runs_dir, capsys):
    assert main(["transfer", "digits", "--image-size", "16", "--mode", "features"]) == 2
    assert "below mobilenet_v2's minimum of 32 px" in capsys.readouterr().err


def test_features_then_finetune_on_digits(torch_home, runs_dir, tmp_path):
    run = transfer("digits", "mobilenet_v2", mode="both", dense=32, finetune_epochs=1, **DIGITS_32)
    metrics = __import__("json").loads((run.run_dir / "metrics.json").read_text())
    stages = metrics["stages"]
    assert set(stages) == {"features", "finetune"} and metrics["chosen_stage"] in stages
    assert stages["features"]["accuracy"] > 0.6  # 10 classes: chance is 0.1
    report = (run.run_dir / "report.md").read_text()
    assert "| features" in report and "| finetune" in report and "IMAGENET1K_V1" in report
    for stage in ("features", "finetune"):
        assert (run.run_dir / stage / "curves.png").is_file() and (run.run_dir / stage / "metrics.json").is_file()
    # The contract travels: re-evaluation from best.pt reproduces the chosen stage's test accuracy.
    assert run.trained().preprocessing.source == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert run.trained().preprocessing.input_size == [32, 32] and run.trained().preprocessing.input_channels == 3
    assert run.evaluate().accuracy == pytest.approx(stages[metrics["chosen_stage"]]["accuracy"], abs=1e-9)
    # predict applies it to a user image file: same answer as torchvision's own transforms by hand.
    from sklearn.datasets import load_digits
    from torchvision.transforms import v2

    image = (load_digits().images[5] * 255 / 16).astype(np.uint8)
    (tmp_path / "five.png").write_bytes(png_bytes(image))
    top = run.predict(tmp_path / "five.png", top_k=1)[0]["top"][0]
    x = v2.Compose([v2.Resize(32, antialias=True), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(
        torch.from_numpy(image).float().div(255)[None, None].expand(-1, 3, -1, -1))
    with torch.no_grad():
        by_hand = run.trained().model.eval()(x).softmax(1)[0]
    assert top[1] == pytest.approx(float(by_hand.max()), abs=1e-5)
    assert run.trained().class_names.index(top[0]) == int(by_hand.argmax())
    # export reuses it too
    assert main(["export", str(run.run_dir), "--format", "onnx"]) == 0
    contract = __import__("json").loads((run.run_dir / "export-onnx" / "preprocessing.json").read_text())
    assert contract["input"] == {"layout": "NCHW", "dtype": "float32", "channels": 3, "image_size": [32, 32]}
    assert contract["mean"] == [0.485, 0.456, 0.406] and "repeat the grayscale channel 3 times" in contract["steps"]


def test_unnormalised_tensors_fed_to_the_model_warn(torch_home, runs_dir, capsys):
    run = transfer("digits", "mobilenet_v2", mode="features", **DIGITS_32)
    fresh = TrainedNetwork.load(run.run_dir)
    fresh.model(torch.rand(8, 3, 32, 32))  # [0, 1] pixels where ImageNet normalisation is expected
    assert "inputs lie in [0, 1]" in capsys.readouterr().err
    other = TrainedNetwork.load(run.run_dir)
    other.predict_proba(np.zeros((4, 8, 8, 1), np.uint8) + 100)
    assert "warning" not in capsys.readouterr().err  # the run's own preprocessing: no warning


def test_second_head_reads_the_feature_cache(torch_home, runs_dir, private_cache):
    first = transfer("digits", "mobilenet_v2", mode="features", **DIGITS_32)
    second = transfer("digits", "mobilenet_v2", mode="features", dense=64, **DIGITS_32)
    read = lambda run: __import__("json").loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert set(read(first)["features_from_cache"].values()) == {False}
    assert set(read(second)["features_from_cache"].values()) == {True}
    assert len(list((private_cache / "features").glob("*.npy"))) == 3
    transfer("digits", "mobilenet_v2", mode="features", **{**DIGITS_32, "image_size": 40})  # new contract: new key
    assert len(list((private_cache / "features").glob("*.npy"))) == 6


def test_unfreeze_last_n_too_many_on_a_run(torch_home, runs_dir, capsys):
    code = main(["transfer", "digits", "--image-size", "32", "--mode", "finetune", "--unfreeze", "last:40"])
    assert code == 2 and "(19)" in capsys.readouterr().err


def test_gray_sum_mode_takes_one_channel(torch_home, runs_dir):
    run = transfer("digits", "mobilenet_v2", mode="features", gray="sum", **DIGITS_32)
    assert run.trained().model.backbone.features[0][0].in_channels == 1 and run.trained().preprocessing.input_channels is None
    assert len(run.trained().preprocessing.mean) == 1 and run.evaluate().accuracy > 0.3


def test_knn_on_embeddings_beside_pixels(torch_home, runs_dir, capsys):
    assert main(["knn", "digits", "--features", "mobilenet_v2", "--feature-size", "32", "--k", "1,3"]) == 0
    run = sorted(runs_dir.iterdir())[-1]
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert "1280-dimensional embeddings" in metrics["space"] and metrics["accuracy"] > 0.5
    assert "embeddings" in (run / "report.md").read_text()
    # nothing here can score raw images with it: explain says so in its report, the image card in one line
    from starlette.testclient import TestClient

    from classlab.commands.explain import explain
    from classlab.web.app import create_app

    text = explain(run).details["attribution"]
    assert text.startswith("Attribution was not computed") and "backbone's embeddings" in text
    first = (run / "predictions.csv").read_text().splitlines()[1].split(",")[0]
    with TestClient(create_app(runs_dir), base_url="http://127.0.0.1") as client:
        card = client.get(f"/runs/{run.name}/card", params={"id": first})
        assert card.status_code == 400 and "knn DATA --features BACKBONE" in card.text


def test_mnist_run_transferred_to_fashion_mnist(runs_dir):
    need(DATA / "mnist")
    need(DATA / "fashion-mnist")
    from classlab.api import train

    source = train("mnist", "workshop-cnn", epochs=1, progress=False,
                   data_options={"data_dir": str(DATA), "max_train": 3000, "max_eval": 500})
    run = transfer("fashion-mnist", str(source.run_dir), mode="both", head_epochs=10, finetune_epochs=2,
                   progress=False, data_options={"data_dir": str(DATA), "max_train": 3000, "max_eval": 500})
    metrics = __import__("json").loads((run.run_dir / "metrics.json").read_text())
    assert metrics["weights"].startswith("run:") and run.trained().preprocessing.channels == 1
    assert metrics["stages"]["features"]["feature_width"] == 128  # the deck CNN's dense layer
    assert metrics["stages"]["features"]["accuracy"] > 0.6 and metrics["accuracy"] > 0.6
    assert run.evaluate().accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)


def test_workshop_includes_the_transfer_stop_when_weights_are_cached(torch_home, runs_dir):
    from classlab.data.options import DataOptions
    from classlab.commands.workshop import run_workshop

    result = run_workshop(DataOptions(data="digits"))
    stops = {r["stop"]: r for r in result.details["results"]}
    assert list(stops) == ["explore", "knn", "scratch-mlp", "mlp", "cnn", "transfer"] and result.details["skipped"] is None
    assert stops["transfer"]["accuracy"] > 0.6
    assert "MobileNetV2 frozen + head" in (result.run_dir / "report.md").read_text()


def test_killed_transfer_run_resumes_each_stage_from_its_last_checkpoint(torch_home, runs_dir, monkeypatch):
    import json

    from classlab.training import engine

    args = ["transfer", "digits", "--image-size", "32", "--mode", "both", "--dense", "32", "--head-epochs", "2",
            "--finetune-epochs", "2", "--precision", "fp32"]
    assert main(args) == 0
    whole = sorted(runs_dir.iterdir())[-1]
    logged = []

    def die_in_finetuning(self, trainer, row):  # a kill right after fine-tuning's first epoch was saved
        logged.append(row["epoch"])
        if len(logged) == 3:
            raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(engine.PrintLog, "after_epoch", die_in_finetuning)
        assert main(args) == 130  # "interrupted"
    part = sorted(runs_dir.iterdir())[-1]
    assert not (part / "metrics.json").exists() and (part / "finetune" / "last.pt").is_file()
    assert main(["transfer", "--resume", str(part), "--lr", "0.1"]) == 2  # options come from the run
    assert main(["transfer", "--resume", str(part)]) == 0
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (whole, part))
    for stage in ("features", "finetune"):
        assert b["stages"][stage]["epochs_run"] == 2
        assert b["stages"][stage]["accuracy"] == pytest.approx(a["stages"][stage]["accuracy"], abs=1e-9)
    history = (part / "finetune" / "history.csv").read_text().splitlines()
    assert len(history) == 3  # a header and both epochs: the first was not trained again
    assert main(["transfer", "--resume", str(sorted(runs_dir.iterdir())[0])]) == 0  # a finished run: no work left


def test_flip_tta_on_cached_features_matches_the_saved_model(torch_home, runs_dir, private_cache):
    import json

    run = transfer("digits", "mobilenet_v2", mode="features", tta="flip", **DIGITS_32)
    stage = json.loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert set(stage["features_from_cache"]) == {"train", "val", "test", "val mirrored", "test mirrored"}
    assert len(list((private_cache / "features").glob("*.npy"))) == 5
    assert run.trained().tta == "flip"
    # scoring the saved backbone + head on images (mirror averaged) reproduces the stage's cached-feature score
    assert run.evaluate().accuracy == pytest.approx(stage["accuracy"], abs=1e-9)
    ds = __import__("classlab").load_dataset("digits")
    x = run.trained().preprocessing
    batch = torch.from_numpy(ds.images[:6])
    from classlab.inference.preprocess import to_input
    with torch.no_grad():
        inputs = to_input(batch, x)
        by_hand = (run.trained().model.eval()(inputs).softmax(1) + run.trained().model(inputs.flip(-1)).softmax(1)) / 2
    assert np.allclose(run.predict_proba(ds.images[:6]), by_hand.numpy(), atol=1e-5)
    with pytest.raises(ClasslabError, match="none or flip"):
        transfer("digits", "mobilenet_v2", mode="features", tta="flip-translate", **DIGITS_32)


def test_head_augment_flip_trains_the_head_on_mirrored_features_too(torch_home, runs_dir, private_cache, capsys,
                                                                  monkeypatch):
    import json

    from classlab.backbones.config import TransferConfig
    from classlab.backbones import features as features_module

    hashed = []  # each split's pixels are hashed once for all its cache keys (precision lookup, plain, mirrored)
    blocks = features_module.iter_blocks
    monkeypatch.setattr(features_module, "iter_blocks",
                        lambda images, **kw: hashed.append(len(images)) or blocks(images, **kw))
    run = transfer("digits", "mobilenet_v2", mode="features", head_augment="flip", **DIGITS_32)
    stage = json.loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert set(stage["features_from_cache"]) == {"train", "train mirrored", "val", "test"}
    assert len(list((private_cache / "features").glob("*.npy"))) == 4
    assert len(hashed) == 3, hashed  # train, val, test (it was 6: the precision lookup hashed train twice)
    assert stage["accuracy"] > 0.5 and run.trained().tta == "none"  # a training-time choice: predict sees images as they are
    assert run.evaluate().accuracy == pytest.approx(stage["accuracy"], abs=1e-9)
    report = (run.run_dir / "report.md").read_text()
    assert "constant schedule" in report and "head augment flip" in report
    assert "`features/`" in report and "`finetune/`" not in report  # only the stages that ran
    # the schedule: constant head and one-cycle fine-tuning (a warm-up) by default, one choice for both when given
    assert [TransferConfig().stage_config(s).schedule for s in ("head", "finetune")] == ["constant", "onecycle"]
    assert {TransferConfig(schedule="onecycle").stage_config(s).schedule for s in ("head", "finetune")} == {"onecycle"}
    assert main(["transfer", "digits", "--image-size", "32", "--mode", "features", "--head-augment", "crop"]) == 2
    assert "--head-augment takes none or flip, got 'crop'" in capsys.readouterr().err
    assert main(["transfer", "digits", "--image-size", "32", "--mode", "features", "--schedule", "sometimes"]) == 2
    assert "schedule" in capsys.readouterr().err


def test_folded_batch_norms_give_the_same_features_and_leave_the_backbone_alone():
    import torch
    import torchvision

    from classlab.inference.preprocess import Preprocessing
    from classlab.backbones.features import compute_features, fold_batch_norms

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    model.classifier = torch.nn.Identity()
    for m in model.modules():  # statistics far from the defaults, so a wrong fold would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == norms  # a copy was folded
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    pre = Preprocessing([32, 32], 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], input_size=[64, 64])
    ours = compute_features(model, images, pre, torch.device("cpu"), progress=False)
    x = (torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, size=(64, 64),
                                         mode="bilinear", antialias=True)
         - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.eval()(x)
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    assert next(model.parameters()).is_contiguous()  # the backbone is left as it was, for fine-tuning
    # the folded copy is kept while the backbone is unchanged, and made again when a step changes it
    assert fold_batch_norms(model) is fold_batch_norms(model)
    kept = fold_batch_norms(model)
    with torch.no_grad():
        model.features[0][0].weight.mul_(2)  # in place, as an optimizer step
    refolded = fold_batch_norms(model)
    assert refolded is not kept
    with torch.no_grad():
        assert torch.allclose(refolded(x), model(x), rtol=1e-3, atol=1e-3 * float(ref.abs().max()))

    class Branchy(torch.nn.Module):  # data-dependent control flow: fx cannot trace it
        def forward(self, x):
            return x if x.sum() > 0 else -x
    plain = Branchy()
    assert fold_batch_norms(plain) is plain


def test_feature_precision_follows_the_option_and_measures_under_auto(monkeypatch):
    import torchvision

    from classlab.inference.preprocess import Preprocessing
    from classlab.backbones import features as feats

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    model.classifier = torch.nn.Identity()
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    pre = Preprocessing([32, 32], 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], input_size=[64, 64])
    cpu = torch.device("cpu")
    assert feats.feature_precision(model, images, pre, cpu, "fp32") == (False, "fp32 (--precision fp32)")
    assert feats.feature_precision(model, images, pre, cpu, "bf16") == (True, "bf16 (--precision bf16)")
    monkeypatch.setattr(feats, "bf16_supported", lambda device: False)
    assert feats.feature_precision(model, images, pre, cpu, "auto") == (False, "fp32 (no native bf16 on this device)")
    monkeypatch.setattr(feats, "bf16_supported", lambda device: True)
    monkeypatch.setattr(feats, "MEASURE_FROM_S", 1e9)  # every batch is "quick": not worth timing, fp32
    bf16, account = feats.feature_precision(model, images, pre, cpu, "auto")
    assert not bf16 and "not worth measuring" in account
    monkeypatch.setattr(feats, "MEASURE_FROM_S", 0.0)
    monkeypatch.setattr(feats, "BF16_FEATURE_ERROR", 1.0)  # speed alone decides
    bf16, account = feats.feature_precision(model, images, pre, cpu, "auto")
    import re
    fp32_ms, bf16_ms = (float(v) for v in re.search(r"fp32 ([\d.]+) ms, bf16 ([\d.]+) ms", account).groups())
    assert account.startswith("bf16" if bf16 else "fp32") and "measured features of one batch" in account
    assert bf16 == (bf16_ms < fp32_ms) or bf16_ms == fp32_ms  # the faster one, as timed (equal when printed: either)
    monkeypatch.setattr(feats, "BF16_FEATURE_ERROR", 1e-9)  # bf16's features are never this close to fp32's
    bf16, account = feats.feature_precision(model, images, pre, cpu, "auto")
    assert not bf16 and re.match(r"fp32 \(bf16 features differ from fp32's by [\d.]+% on average; fp32 ", account)
    assert next(model.parameters()).is_contiguous() and model.features[0][1].training is False
    # bf16 features: close to fp32 ones (what the head then sees at predict time), never NaN
    exact = feats.compute_features(model, images, pre, cpu, progress=False)
    rounded = feats.compute_features(model, images, pre, cpu, bf16=True, progress=False)
    assert torch.isfinite(rounded).all() and rounded.dtype == torch.float32
    assert float((rounded - exact).abs().max()) < 0.05 * float(exact.abs().max())
    # batch size by image size: small batches where activations are large, twice the pixels in bf16
    assert feats.feature_batch_size(Preprocessing([32, 32], 3, [0.5] * 3, [0.5] * 3, input_size=[96, 96]), cpu) == 32
    at_224 = Preprocessing([32, 32], 3, [0.5] * 3, [0.5] * 3, input_size=[224, 224])
    assert feats.feature_batch_size(at_224, cpu) == 8 and feats.feature_batch_size(at_224, cpu, bf16=True) == 11
    assert feats.feature_batch_size(pre, cpu) == 64 and feats.feature_batch_size(at_224, torch.device("cuda")) == 128
    assert torch.allclose(feats.compute_features(model, images, pre, cpu, batch_size=7, progress=False), exact,
                          rtol=1e-4, atol=1e-4 * float(exact.abs().max()))


def test_bf16_training_features_keep_fp32_test_scores(torch_home, runs_dir, private_cache, capsys):
    import json

    run = transfer("digits", "mobilenet_v2", mode="features", precision="bf16", **DIGITS_32)
    stage = json.loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert stage["feature_precision"] == "bf16 (--precision bf16)" and stage["accuracy"] > 0.6
    # test features are fp32: scoring the saved model on images reproduces the stage's score exactly
    assert run.evaluate().accuracy == pytest.approx(stage["accuracy"], abs=1e-9)
    assert len(list((private_cache / "features").glob("*.npy"))) == 3
    assert "Training images' features: bf16 (--precision bf16); test features: fp32" in \
        (run.run_dir / "report.md").read_text()
    # --precision auto later reads what the cache holds (a re-timed choice could flip and recompute everything)
    again = transfer("digits", "mobilenet_v2", mode="features", dense=64, **{**DIGITS_32, "progress": True})
    stage = json.loads((again.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert stage["feature_precision"] == "bf16 (as the cached features of these images)"
    assert set(stage["features_from_cache"].values()) == {True}
    assert "feature precision (auto): bf16 (as the cached features" in capsys.readouterr().out


def test_small_images_default_to_the_measured_small_input_size():
    from types import SimpleNamespace

    from classlab.backbones.plan import SMALL_INPUT_SIZE, BackbonePlan

    plan = BackbonePlan("mobilenet_v2", None, None, "test", "x", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
                        [224, 224], 32, None)
    assert plan.default_input_size((32, 32)) == [SMALL_INPUT_SIZE] * 2  # CIFAR-sized: 160, not 224
    assert plan.default_input_size((28, 28)) == [SMALL_INPUT_SIZE] * 2
    assert plan.default_input_size((300, 200)) == [224, 224]  # photos: the weights' own size
    ds = SimpleNamespace(is_volume=False, item_shape=(32, 32, 3), channels=3, crop=None)
    assert plan.contract(ds, None)[0].model_size == [SMALL_INPUT_SIZE] * 2
    assert plan.contract(ds, 96)[0].model_size == [96, 96]  # --image-size wins


def test_the_head_gets_enough_steps_on_a_small_training_split(capsys):
    """--head-epochs left out: 5 epochs, or as many as 100 steps take on a small split (at most 100 epochs);
    given, it is kept. The batch never exceeds the split."""
    from classlab.backbones.config import TransferConfig

    auto = TransferConfig()
    assert auto.head_config(45_000).epochs == 5 and auto.head_config(1_257).epochs == 5  # 704 and 20 steps an epoch
    assert auto.head_config(140).epochs == 34 and auto.head_config(200).epochs == 25  # 3 and 4 steps an epoch
    assert auto.head_config(59).epochs == 100 and auto.head_config(59).batch_size == 59
    assert "larger than the training split (59 images)" in capsys.readouterr().err
    assert TransferConfig(head_epochs=3).head_config(59).epochs == 3
    assert TransferConfig(batch_size=16).head_config(200).epochs == 8  # 13 steps an epoch


def test_a_small_folder_trains_its_head_longer_and_the_report_says_so(torch_home, runs_dir, tmp_path):
    ds = __import__("classlab").load_dataset("digits")
    for digit in (0, 1, 2):
        folder = tmp_path / "folder" / str(digit)
        folder.mkdir(parents=True)
        for i in np.flatnonzero(ds.labels == digit)[:20]:
            (folder / f"{i}.png").write_bytes(png_bytes(ds.images[i, :, :, 0].repeat(4, 0).repeat(4, 1)))
    run = transfer(str(tmp_path / "folder"), "mobilenet_v2", mode="features", progress=False,
                   data_options={"image_size": 32})
    stage = __import__("json").loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
    assert stage["epochs_run"] == stage["planned_epochs"] > 5 and stage["batch_size"] < 64
    assert f"The head was given {stage['planned_epochs']} epochs instead of 5" in run.report.read_text()
    assert run.metrics["accuracy"] > 0.6


def test_balanced_class_weight_and_sampler_lift_the_rare_classes_in_both_stages(torch_home, runs_dir, tmp_path):
    """Keras's fit(class_weight=) for transfer: on a 120:8:8 training split the plain head all but ignores the
    two rare digits; --class-weight balanced or --sampler balanced recovers them, and fine-tuning gets the same."""
    tree = imbalanced_digits_tree(tmp_path / "tree", {0: 120, 1: 8, 7: 8}, scale=4)
    rare_recall = {}
    for option in (None, "class_weight", "sampler"):
        run = transfer(str(tree), "mobilenet_v2", mode="features", progress=False, head_epochs=10,
                       data_options={"image_size": 32}, **({option: "balanced"} if option else {}))
        recall = dict(zip(run.evaluation.class_names, (row["recall"] for row in run.metrics["per_class"])))
        rare_recall[option] = (recall["1"] + recall["7"]) / 2
        advice = "consider --class-weight balanced"  # said (and reported) only while the loss is not balanced
        assert (advice in run.report.read_text()) == (option is None)
    assert rare_recall["class_weight"] > rare_recall[None] + 0.1 and rare_recall["sampler"] > rare_recall[None] + 0.1
    run = transfer(str(tree), "mobilenet_v2", mode="both", progress=False, head_epochs=1, finetune_epochs=1,
                   class_weight="balanced", data_options={"image_size": 32})
    for stage in ("features", "finetune"):
        assert load_checkpoint(run.run_dir / stage / "last.pt")["config"]["class_weight"] == "balanced"
    assert main(["transfer", str(tree), "--mode", "features", "--class-weight", "often"]) == 2
