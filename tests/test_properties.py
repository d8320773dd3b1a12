"""Property-based tests (hypothesis): whatever arrays or option values arrive, the result is a clean
dataset / configuration or a ClasslabError with a one-line message; never another exception."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from classlab import ClasslabError, load_dataset

DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.uint16, np.float32, np.float64, np.bool_])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def arrays(dtype, shape):
    """hypothesis arrays over the dtype's whole range (NaN, negatives, huge values); subnormal floats are
    left out because a process that trained a model flushes them (torch.set_flush_denormal)."""
    floats = np.dtype(dtype).kind == "f"
    return hnp.arrays(dtype, shape, elements={"allow_subnormal": False} if floats else None)


def _one_line(e: Exception) -> bool:
    return isinstance(e, ClasslabError) and "\n" not in str(e) and len(str(e)) < 600


@st.composite
def npz_members(draw):
    n = draw(st.integers(0, 12))
    shape = draw(st.sampled_from([(n, 4, 4), (n, 4, 4, 1), (n, 4, 4, 3), (n, 4, 4, 4), (n, 3, 4, 4), (n, 16),
                                  (n, 4, 4, 2), (n, 2, 3, 4, 4, 1)]))
    images = draw(arrays(draw(DTYPES), shape))
    label_dtype = draw(st.sampled_from([np.int64, np.float64, np.uint8, np.bool_]))
    labels = draw(arrays(label_dtype, draw(st.sampled_from([(n,), (n, 1), (n, 2), (max(n - 1, 0),)]))))
    return images, labels


@SETTINGS
@given(members=npz_members())
def test_npz_loader_gives_a_clean_dataset_or_one_line_error(members, tmp_path):
    images, labels = members
    path = tmp_path / "x.npz"
    np.savez(path, train_images=images, train_labels=labels, test_images=images, test_labels=labels)
    try:
        ds = load_dataset(path)
    except ClasslabError as e:
        assert _one_line(e), str(e)
        return
    assert ds.images.dtype == np.uint8 and ds.images.ndim in (4, 5) and ds.images.shape[-1] in (1, 3)
    assert ds.labels.dtype == np.int64 and len(ds.labels) == len(ds.images)
    assert 0 <= ds.labels.min() and ds.labels.max() < ds.num_classes == len(ds.class_names)


@SETTINGS
@example(pixels=np.array([[[0.9]]], dtype=np.float32))  # 0.9f * 255 rounded wrongly in float32 arithmetic
@given(pixels=DTYPES.flatmap(lambda d: arrays(d, st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)))))
def test_pixel_validation_converts_faithfully_or_refuses(pixels):
    from classlab.data import validate

    notes = []
    try:
        out = validate.pixels(pixels, "x", notes)
    except ClasslabError as e:
        assert _one_line(e)
        return
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    if pixels.dtype.kind == "f" and pixels.size and pixels.max() <= 1:
        assert np.allclose(out, np.rint(pixels.astype(np.float64) * 255))
    elif pixels.dtype.kind in "iu" and pixels.size and pixels.max() <= 255:
        assert np.array_equal(out, pixels)


OPTION_VALUES = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "1e-400", "", "abc", "3",
                                           "0.5", "1e9", "-0", "10", "2.5"]),
                          st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).map(repr),
                          st.integers(-10**12, 10**12).map(str))
FLAGS = ["--lr", "--epochs", "--batch-size", "--momentum", "--weight-decay", "--warmup-epochs", "--label-smoothing",
         "--grad-clip", "--early-stopping", "--crop-padding", "--step-size", "--seed", "--val-fraction",
         "--test-fraction", "--max-train", "--image-size"]


@SETTINGS
@given(flag=st.sampled_from(FLAGS), value=OPTION_VALUES)
def test_numeric_options_are_accepted_in_range_or_refused_in_one_line(flag, value, capsys):
    from classlab.cli import build_parser
    from classlab.cli.common import data_options
    from classlab.cli.train import train_config

    parser = build_parser("train")
    try:
        args = parser.parse_args(["train", "digits", f"{flag}={value}"])
    except SystemExit as e:  # argparse refused the value: one line, status 2
        err = capsys.readouterr().err.strip().splitlines()
        assert e.code == 2 and len(err) == 1 and err[0].startswith("classlab: error:"), err
        return
    try:
        cfg, _ = train_config(args)
        cfg.validate()
        opts = data_options(args)
    except ClasslabError as e:
        assert _one_line(e)
        return
    for number in (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.label_smoothing, opts.val_fraction):
        assert np.isfinite(number)
    assert cfg.epochs >= 1 and cfg.batch_size >= 1 and 0 <= cfg.seed < 2**32


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_numbers_from_python_are_checked_too(value):
    from classlab.training.config import TrainConfig

    with pytest.raises(ClasslabError, match="finite"):
        TrainConfig(weight_decay=float(value)).validate()
