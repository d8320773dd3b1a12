"""--mlflow: a training run logged to a local MLflow store (no server), read back with MLflow's own client."""

import json

import pytest

mlflow = pytest.importorskip("mlflow")


def test_train_logs_params_epochs_metrics_report_plots_and_model(tmp_path, monkeypatch):
    from classlab.cli import main

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    store = tmp_path / "mlruns"
    assert main(["train", "digits", "--model", "cnn", "--epochs", "3", "--mlflow", str(store),
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    client = mlflow.tracking.MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("classlab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["train.model"] == "cnn" and run.data.params["train.epochs"] == "3"
    assert run.data.params["data.data"] == "digits"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2, 3]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(saved["accuracy"])
    assert run.data.metrics["test_macro_f1"] == pytest.approx(saved["macro_avg"]["f1"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "metrics.json", "plots", "model"} <= artifacts
    model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.pt", "model/classes.json", "model/preprocessing.json"} <= model
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/curves.png" in plots and "plots/confusion_matrix.png" in plots


def test_an_unusable_tracking_uri_is_one_line(tmp_path, capsys):
    from classlab.cli import main

    assert main(["train", "digits", "--model", "mlp", "--epochs", "1", "--mlflow", "nosuchscheme://x",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("classlab: error: MLflow could not start a run at nosuchscheme://x") and "Traceback" not in err


def test_transfer_logs_both_stages_in_one_run(tmp_path, torch_home, monkeypatch):
    from classlab.cli import main

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    store = tmp_path / "mlruns"
    assert main(["transfer", "digits", "--mode", "both", "--head-epochs", "2", "--finetune-epochs", "1",
                 "--image-size", "32", "--max-train", "200", "--mlflow", str(store),
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("classlab").experiment_id])
    assert run.data.params["transfer.backbone"] == "mobilenet_v2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
    assert "test_accuracy" in run.data.metrics


def test_missing_extras_say_which_to_install(tmp_path, monkeypatch, capsys):
    import sys

    from classlab.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert main(["train", "digits", "--model", "mlp", "--epochs", "1", "--mlflow", "--runs-dir", str(tmp_path)]) == 2
    assert "pip install 'classlab[mlflow]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "timm", None)
    assert main(["transfer", "digits", "--backbone", "timm:resnet18", "--weights", "x", "--runs-dir", str(tmp_path)]) == 2
    assert "pip install 'classlab[timm]'" in capsys.readouterr().err
