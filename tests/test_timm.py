"""timm backbones for transfer (--backbone timm:NAME): weights from a .safetensors or .pth file the test saves
itself, or a local Hugging Face folder with timm's config.json; the preprocessing contract from timm's data
config; features and fine-tuning; predict and export read the run back. Nothing is downloaded."""

import json

import numpy as np
import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("timm-weights")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    save_file(model.state_dict(), root / "test_efficientnet.safetensors")
    torch.save({"state_dict": model.state_dict()}, root / "test_efficientnet.pth")
    folder = root / "hf-folder"
    folder.mkdir()
    save_file(model.state_dict(), folder / "model.safetensors")
    config = dict(model.pretrained_cfg, input_size=[3, 48, 48], mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    (folder / "config.json").write_text(json.dumps({"architecture": "test_efficientnet", "pretrained_cfg": config}))
    cache = root / "hub" / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "0123abcd"
    cache.mkdir(parents=True)  # the layout huggingface_hub's cache has
    for f in folder.iterdir():
        (cache / f.name).symlink_to(f)
    return root


def test_features_from_a_safetensors_file(weights, tmp_path):
    from classlab import api

    run = api.transfer("digits", "timm:test_efficientnet", weights=str(weights / "test_efficientnet.safetensors"),
                       mode="features", head_epochs=2, progress=False, runs_dir=tmp_path)
    report = run.report.read_text()
    data = timm.data.resolve_data_config({}, model=timm.create_model("test_efficientnet"))
    assert f"resize to {data['input_size'][1]}x{data['input_size'][2]}" in report  # timm's contract
    assert run.accuracy is not None and (run.run_dir / "best.pt").is_file()
    proba = run.predict_proba(np.zeros((2, 8, 8, 1), np.uint8))
    assert proba.shape == (2, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_a_hugging_face_folder_sets_the_contract_and_finetuning_runs(weights, tmp_path):
    from classlab import api
    from classlab.trained.export import export_run

    cache = weights / "hub" / "models--timm--test_efficientnet.r160_in1k"
    run = api.transfer("digits", "timm:test_efficientnet", weights=str(cache), mode="both",
                       head_epochs=1, finetune_epochs=1, progress=False, runs_dir=tmp_path,
                       data_options={"max_train": 300})
    pre = run.trained().preprocessing
    assert pre.model_size == [48, 48] and pre.mean == [0.5, 0.5, 0.5] and pre.std == [0.25, 0.25, 0.25]
    bundle = export_run(run.run_dir, "torchscript")
    assert bundle["max_abs_difference"] <= 1e-4


def test_a_pth_checkpoint_and_the_one_line_refusals(weights, tmp_path, capsys):
    from classlab.cli import main

    base = ["transfer", "digits", "--mode", "features", "--head-epochs", "1", "--runs-dir", str(tmp_path)]
    assert main(base + ["--backbone", "timm:test_efficientnet", "--weights",
                        str(weights / "test_efficientnet.pth")]) == 0
    capsys.readouterr()
    for extra, message in ((["--backbone", "timm:test_efficientnet"], "needs --weights"),
                           (["--backbone", "timm:no_such_net", "--weights", "x"], "unknown timm model 'no_such_net'"),
                           (["--backbone", "timm:test_resnet", "--weights", str(weights / "test_efficientnet.pth")],
                            "does not fit this architecture")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
