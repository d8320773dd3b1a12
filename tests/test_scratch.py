"""Learning by building: the NumPy pieces reproduce the decks' numbers and agree with torch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from classlab import ClasslabError
from classlab.cli import main
from classlab.scratch import (ACTIVATIONS, LogisticNeuron, Perceptron, ScratchMLP, avg_pool2d, avg_pool3d, conv2d,
                              conv3d, max_pool2d, max_pool3d, numerical_gradient, output_size, sigmoid_neuron, softmax)
from classlab.scratch.neuron import DECK_INPUTS, DECK_TARGETS
from classlab.scratch.shapes import parse_layers, trace


# -- activations and softmax ------------------------------------------------------------------------

def test_softmax_reproduces_the_deck():
    np.testing.assert_allclose(softmax(np.array([1, 0.3, 3, 0.5])), [0.10534997, 0.05231524, 0.77843681, 0.06389798],
                               atol=5e-9)
    big = softmax(np.array([1000.0, 1001.0]))  # the deck's formula overflows here
    assert np.isfinite(big).all() and big.sum() == pytest.approx(1)
    x = np.random.default_rng(0).normal(size=(5, 7)) * 10
    np.testing.assert_allclose(softmax(x, axis=1), torch.softmax(torch.from_numpy(x), 1).numpy(), atol=1e-12)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivatives_equal_autograd(name):
    f, df = ACTIVATIONS[name]
    x = np.linspace(-6, 6, 241) + 1e-3  # off the kink at 0
    t = torch.tensor(x, requires_grad=True)
    torch_f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
               "leaky_relu": lambda v: F.leaky_relu(v, 0.01)}[name]
    torch_f(t).sum().backward()
    np.testing.assert_allclose(f(x), torch_f(torch.tensor(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(df(x), t.grad.numpy(), atol=1e-12)


def test_plot_activations_and_the_neuron(tmp_path, capsys):
    assert main(["plot", "activations", "--output", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", "neuron", "--output", str(tmp_path / "n.png")]) == 0
    out = capsys.readouterr().out
    assert "random starting weights: [-0.16595599  0.44064899 -0.99977125]" in out
    assert "weights after training:  [ 9.67299303 -0.2078435  -4.62963669]" in out
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", "spiders"]) == 2


# -- the sigmoid neuron, perceptron, logistic regression ------------------------------------------------

def test_sigmoid_neuron_reproduces_the_deck():
    trace_ = sigmoid_neuron()
    # np.random.seed(1); 2 * np.random.random((3, 1)) - 1: the deck's "random starting weights"
    np.testing.assert_allclose(trace_.weights_before.ravel(), [-0.16595599, 0.44064899, -0.99977125], atol=1e-8)
    out = trace_.outputs_after.ravel()
    assert out[0] < 0.02 and out[3] < 0.02 and out[1] > 0.98 and out[2] > 0.98  # learned targets 0, 1, 1, 0
    assert trace_.loss_curve[-1] < trace_.loss_curve[0] / 100
    # the same updates in torch: the gradient of 1/2 * sum(error^2) is -X.T @ (error * sigmoid'(z))
    w = torch.tensor(trace_.weights_before, dtype=torch.float64)
    X, y = torch.tensor(DECK_INPUTS), torch.tensor(DECK_TARGETS)
    for _ in range(10_000):
        w.requires_grad_(True)
        (0.5 * ((y - torch.sigmoid(X @ w)) ** 2).sum()).backward()
        w = (w - w.grad).detach()
    np.testing.assert_allclose(trace_.weights_after, w.numpy(), atol=1e-8)
    assert "random starting weights" in trace_.text()


def test_sigmoid_neuron_matches_the_decks_published_numbers():
    # The decks' source (Arnx, "First neural network for beginners explained") prints these weights after the
    # 10,000 updates, and the outputs its loop computed last (before the final update, hence 9,999 here).
    t = sigmoid_neuron()
    np.testing.assert_allclose(t.weights_after.ravel(), [9.67299303, -0.2078435, -4.62963669], atol=1e-8)
    last = sigmoid_neuron(updates=9_999)
    np.testing.assert_allclose(last.outputs_after.ravel(), [0.00966449, 0.99211957, 0.99358898, 0.00786506], atol=1e-8)


def test_perceptron_and_logistic_neuron_on_digits_zero_vs_one():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(n_class=2, return_X_y=True)
    X = X / 16
    assert Perceptron().fit(X, y).score(X, y) == 1.0  # linearly separable: the perceptron converges
    ours = LogisticNeuron(lr=0.5, epochs=3000).fit(X, y)
    ref = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    assert ours.score(X, y) == ref.score(X, y) == 1.0
    with pytest.raises(ClasslabError, match="labels must be 0 or 1"):
        Perceptron().fit(X, y + 1)


# -- the MLP: gradients, training, bad input ------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mlp_gradients_match_finite_differences_and_autograd(activation):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    net = ScratchMLP(hidden=[4, 3], activation=activation, dtype=np.float64, weight_decay=0.0).init(5, 3)
    for b in net.params[1::2]:  # non-zero biases: no pre-activation sits exactly on ReLU's kink at 0
        b += rng.normal(size=b.shape) * 0.1
    loss, grads = net.loss_and_grads(X, y)
    for p, g in zip(net.params, grads):
        numeric = numerical_gradient(lambda: net.loss_and_grads(X, y)[0], p)
        np.testing.assert_allclose(g, numeric, atol=1e-6)
    # torch autograd on the same weights
    tp = [torch.tensor(p, requires_grad=True) for p in net.params]
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation]
    h = torch.tensor(X)
    for layer in range(3):
        h = h @ tp[2 * layer] + tp[2 * layer + 1]
        if layer < 2:
            h = act(h)
    torch_loss = F.cross_entropy(h, torch.tensor(y))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), abs=1e-12)
    for g, t in zip(grads, tp):
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-6)


def test_mlp_reaches_95_percent_on_digits_through_train(runs_dir):
    from classlab.api import train

    result = train("digits", "scratch-mlp", epochs=30, lr=1e-3, optimizer="adam", progress=False,
                   model_options={"hidden": [128]})
    assert result.accuracy >= 0.95
    run = result.run_dir
    for name in ("history.csv", "curves.png", "metrics.json", "report.md", "predictions.csv", "scratch.npz", "split.csv"):
        assert (run / name).is_file(), name
    with np.load(run / "scratch.npz", allow_pickle=False) as z:
        assert z["param0"].shape == (64, 128)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_mlp_other_optimizers_learn(optimizer):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    net = ScratchMLP([64], optimizer=optimizer, lr=0.05, epochs=10, dropout=0.1).fit(X / 16, y)
    assert net.score(X / 16, y) > 0.9


def test_mlp_bad_input(runs_dir, capsys):
    with pytest.raises(ClasslabError, match="at least one hidden layer"):
        ScratchMLP(hidden=[])
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    with pytest.raises(ClasslabError, match="diverged.*too high; try --lr"):
        ScratchMLP([32], optimizer="sgd", lr=1e30, epochs=3).fit(X, y)
    assert main(["train", "digits", "--model", "scratch-mlp", "-o", "hidden=", "--epochs", "1"]) == 2
    assert "at least one hidden layer" in capsys.readouterr().err
    assert main(["train", "digits", "--model", "scratch-mlp", "--augment", "flip-crop"]) == 2
    assert "does not implement --augment" in capsys.readouterr().err


# -- convolution and pooling ----------------------------------------------------------------------------

def test_the_decks_worked_convolution_example():
    x = np.arange(9, dtype=float).reshape(1, 1, 3, 3)
    k = np.array([[0, 1], [2, 3]], dtype=float).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(conv2d(x, k)[0, 0], [[19, 25], [37, 43]])


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((1, 2), (2, 0))])
def test_conv2d_matches_torch(stride, padding):
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 3, 9, 8)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    ref = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride, padding=padding).numpy()
    np.testing.assert_allclose(conv2d(x, w, b, stride, padding), ref, atol=1e-6)


def test_conv3d_and_pooling_match_torch():
    rng = np.random.default_rng(2)
    v, w = rng.normal(size=(2, 2, 6, 7, 5)), rng.normal(size=(3, 2, 3, 3, 2))
    np.testing.assert_allclose(conv3d(v, w, None, 2, 1), F.conv3d(torch.tensor(v), torch.tensor(w), stride=2,
                                                                  padding=1).numpy(), atol=1e-6)
    x = rng.normal(size=(2, 3, 9, 8))
    t = torch.tensor(x)
    np.testing.assert_allclose(max_pool2d(x, 2), F.max_pool2d(t, 2).numpy(), atol=1e-6)
    np.testing.assert_allclose(max_pool2d(x, 3, 2, 1), F.max_pool2d(t, 3, 2, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(avg_pool2d(x, 3, 2, 1), F.avg_pool2d(t, 3, 2, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(max_pool3d(v, 2), F.max_pool3d(torch.tensor(v), 2).numpy(), atol=1e-6)
    np.testing.assert_allclose(avg_pool3d(v, 2, 1), F.avg_pool3d(torch.tensor(v), 2, 1).numpy(), atol=1e-6)


# -- convolution arithmetic -----------------------------------------------------------------------------

def test_output_size_formula_and_the_decks_50px_cnn(capsys):
    assert output_size(32, 3, 1, 2) == 16 == (32 + 2 * 1 - 3) // 2 + 1
    rows = trace([50, 50], parse_layers("conv3p1,pool2,conv3,pool2,conv3"))
    assert [r["output"][0] for r in rows] == [50, 25, 23, 11, 9]  # the deck's Keras summary
    assert main(["conv-size", "--input", "32", "--kernel", "3", "--padding", "1", "--stride", "2"]) == 0
    assert "16x16" in capsys.readouterr().out
    assert main(["conv-size", "--input", "16x64x64", "--layers", "conv3p1,pool2", "--json"]) == 0
    assert '"output": [\n        8,\n        32,\n        32' in capsys.readouterr().out
    # each real layer agrees with torch's own shape arithmetic
    x = torch.zeros(1, 1, 50, 50)
    for r in rows:
        layer = torch.nn.Conv2d(1, 1, r["kernel"], r["stride"], r["padding"]) if r["kind"] == "conv" else \
            torch.nn.MaxPool2d(r["kernel"], r["stride"], r["padding"])
        x = layer(x)
        assert list(x.shape[2:]) == r["output"]


def test_conv_size_rejects_impossible_settings(capsys):
    assert main(["conv-size", "--input", "4", "--kernel", "7"]) == 2
    assert "does not fit an input of 4" in capsys.readouterr().err
    assert main(["conv-size", "--input", "8", "--layers", "conv3,pool2,conv5"]) == 2
    assert "layer 3 (conv5) on 3x3" in capsys.readouterr().err
    assert main(["conv-size", "--input", "8", "--layers", "conv3,dense"]) == 2
