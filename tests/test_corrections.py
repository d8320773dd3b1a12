"""Label corrections (corrections.csv) applied by ``--corrections``: relabels and drops reach training and
validation only, the test split stays that of the corrected run, and the run reproduces itself."""

import numpy as np
import pytest

from classlab.data.corrections import Correction, read_corrections, write_corrections
from classlab.data.options import DataOptions, load_and_split, saved_options
from classlab.errors import ClasslabError


def ids_in(ds, split, name):
    return [ds.ids[i] for i in split.indices(name)]


def test_corrections_relabel_and_drop_train_images_only(tmp_path, capsys):
    ds, split = load_and_split(DataOptions("digits"))
    train, test = ids_in(ds, split, "train"), ids_in(ds, split, "test")
    index = {item: i for i, item in enumerate(ds.ids)}
    old = ds.labels[index[train[0]]]
    new_label = ds.class_names[(old + 1) % 10]
    path = write_corrections(tmp_path / "corrections.csv", [
        Correction(train[0], "relabel", new_label), Correction(train[1], "drop"), Correction(train[2], "keep"),
        Correction(test[0], "drop")])
    fixed, fixed_split = load_and_split(DataOptions("digits", corrections=str(path)))
    assert "1 corrections concern test images" in capsys.readouterr().err
    assert fixed.class_names[fixed.labels[index[train[0]]]] == new_label
    assert fixed_split.assignment[index[train[1]]] == "dropped"
    assert ids_in(fixed, fixed_split, "test") == test  # the same test images, with the same labels
    assert np.array_equal(fixed.labels[split.indices("test")], ds.labels[split.indices("test")])
    assert ds.labels[index[train[0]]] == old  # the loaded dataset itself is not changed


def test_a_corrected_run_reads_back_with_its_labels(tmp_path):
    from classlab import api

    ds, split = load_and_split(DataOptions("digits"))
    first = ids_in(ds, split, "train")[0]
    path = write_corrections(tmp_path / "c.csv", [Correction(first, "relabel", "0" if ds.labels[0] else "1")])
    run = api.train("digits", "mlp", epochs=1, runs_dir=tmp_path / "runs", progress=False,
                    data_options={"corrections": str(path)})
    assert (run.run_dir / "corrections_applied.csv").is_file()
    again, again_split = load_and_split(saved_options(run.run_dir))  # the manifest holds the corrected label
    assert again_split.method.startswith("manifest")
    assert "relabelled" in run.report.read_text()


@pytest.mark.parametrize("text, message", [
    ("id,what\nx,keep\n", "not a corrections file"),
    ("id,action,label\nall/00001,burn,\n", "action 'burn' is not one of keep, relabel, drop"),
    ("id,action,label\nall/00001,relabel,\n", "an id and a label are needed"),
    ("id,action,label\nno-such-image,drop,\n", "not in digits"),
    ("id,action,label\nall/00001,relabel,cat\n", "'cat' is not a class of digits"),
])
def test_bad_corrections_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "corrections.csv"
    path.write_text(text)
    with pytest.raises(ClasslabError, match=message):
        load_and_split(DataOptions("digits", corrections=str(path)))


def test_later_rows_replace_earlier_ones_and_missing_files_are_named(tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text("id,action,label\na,drop,\na,relabel,3\n")
    assert read_corrections(path) == [Correction("a", "relabel", "3")]
    with pytest.raises(ClasslabError, match="not found"):
        read_corrections(tmp_path / "missing.csv")


def test_cli_flag(tmp_path, capsys):
    from classlab.cli import main

    path = tmp_path / "c.csv"
    path.write_text("id,action,label\nall/00001,burn,\n")
    assert main(["train", "digits", "--model", "mlp", "--epochs", "1", "--corrections", str(path),
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "action 'burn'" in capsys.readouterr().err
