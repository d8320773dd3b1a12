"""The examples/ notebooks, one per deck topic, executed end to end (nbclient, a fresh kernel each) on the
embedded digits data; their outputs are stripped in git. Also the rich display they rely on."""

import json
from pathlib import Path

import pytest

from conftest import DATA, need

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.ipynb"))


def test_there_is_a_notebook_per_deck_topic_and_none_keeps_outputs():
    assert [p.name[:2] for p in EXAMPLES] == ["01", "02", "03", "04", "05", "06"]
    for path in EXAMPLES:
        cells = json.loads(path.read_text())["cells"]
        ids = [cell.get("id") for cell in cells]  # nbformat 4.5 requires unique cell ids (a hard error soon)
        assert None not in ids and len(set(ids)) == len(ids), path.name
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path, tmp_path, monkeypatch, request):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if "transfer" in path.name or "photos" in path.name:
        request.getfixturevalue("torch_home")  # MobileNetV2's weights from ../shared, never downloaded
    if "photos" in path.name:  # the tutorial's ants and bees, read in place from ../shared
        monkeypatch.setenv("CLASSLAB_PHOTOS", str(need(DATA / "hymenoptera" / "hymenoptera_data.zip")))
    monkeypatch.setenv("CLASSLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if "knn" in path.name or "classic" in path.name:  # results display themselves as HTML
        assert any("text/html" in o.get("data", {}) for o in outputs)


def test_results_render_in_jupyter(tmp_path):
    from classlab import api

    run = api.train("digits", "mlp", epochs=1, progress=False, runs_dir=tmp_path)
    html = run._repr_html_()
    assert "accuracy" in html and "95% CI" in html and "rows: true class" in html
    assert "data:image/png;base64," in html  # the curves, inline
    assert repr(run).startswith("RunResult(train, ") and "accuracy 0." in repr(run)
    ev_html = run.evaluation._repr_html_()
    assert "specificity" in ev_html and ev_html.count("<tr>") >= 10
    assert repr(run.evaluation).startswith("Evaluation(180 images, 10 classes")


def test_class_names_are_escaped_in_notebook_html():
    import numpy as np

    from classlab.evaluation import evaluate

    ev = evaluate(np.array([0, 1, 1]), np.array([0, 1, 0]), class_names=["<script>x</script>", "b"])
    assert "<script>" not in ev._repr_html_() and "&lt;script&gt;" in ev._repr_html_()
