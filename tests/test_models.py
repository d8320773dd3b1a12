"""The model registry: the decks' published parameter counts, torchvision's, shapes, clear errors."""

import pytest
import torch
import torchvision.models as tvm

from classlab import ClasslabError
from classlab.cli import main
from classlab.models import count_parameters, create_model, get_entry, list_models, summary_table

REQUIRED = {"logreg", "mlp", "cnn", "workshop-cnn", "lenet5", "alexnet", "vgg11", "vgg16", "resnet18", "resnet34",
            "resnet50", "mobilenet_v2", "cnn3d", "fastnet"}


def meta(name, *args, **kw):
    with torch.device("meta"):
        return create_model(name, *args, **kw)


def test_registry_has_every_required_model():
    assert REQUIRED <= set(list_models())


def test_the_decks_published_counts():
    # Waste deck: MLP with 3 inputs, three hidden layers of 5 and 2 outputs: 75 weights + 17 biases.
    assert count_parameters(create_model("mlp", 2, 3, (1, 1), hidden=[5, 5, 5])) == (92, 92)
    # Flatten(50x50) -> Dense 128 -> Dropout -> Dense 2.
    assert count_parameters(create_model("mlp", 2, 1, 50, hidden=[128], dropout=0.5))[0] == 320_386
    # The 50x50x1 CNN: conv16 same, pool, conv16, pool, conv16, flatten, dense 2.
    model = create_model("cnn", 2, 1, 50, filters=[16, 16, 16], padding=["same", "valid", "valid"], pool=[2, 2, 0],
                         dense=[])
    text, data = summary_table(model, (1, 50, 50))
    assert data["total_params"] == 7394 and "Total params: 7,394" in text
    convs = [r for r in data["layers"] if r["type"] == "Conv2d"]
    assert [r["params"] for r in convs] == [160, 2320, 2320]  # the deck's per-layer column
    assert [r["output_shape"] for r in convs] == [[-1, 16, 50, 50], [-1, 16, 23, 23], [-1, 16, 9, 9]]


def test_classic_lenet5_count():
    # LeCun's LeNet-5 on 1x32x32 with 10 outputs (conv6, conv16, 120, 84, 10): 61,706 parameters.
    assert count_parameters(create_model("lenet5", 10, 1, 32))[0] == 61_706


@pytest.mark.parametrize("name, reference", [("resnet18", tvm.resnet18), ("resnet50", tvm.resnet50),
                                             ("mobilenet_v2", tvm.mobilenet_v2), ("vgg16", tvm.vgg16_bn),
                                             ("alexnet", tvm.alexnet)])
def test_imagenet_stem_equals_torchvision(name, reference):
    ours = meta(name, 1000, 3, 224)
    with torch.device("meta"):
        theirs = reference()
    assert count_parameters(ours)[0] == count_parameters(theirs)[0]


@pytest.mark.parametrize("name", sorted(REQUIRED - {"cnn3d"}))
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28)])
def test_every_image_model_trains_a_step(name, channels, size):
    torch.manual_seed(0)
    if name.startswith("vgg") and size < 32:  # five 2x2 max-pools need 32 px: say so, with the fix
        with pytest.raises(ClasslabError, match="needs at least 32x32; pass --image-size 32"):
            create_model(name, 7, channels, size)
        size = 32
    model = create_model(name, 7, channels, size)
    x, y = torch.randn(4, channels, size, size), torch.tensor([0, 1, 2, 6])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_small_stem_keeps_resolution():
    small, big = meta("resnet18", 10, 3, 32), meta("resnet18", 10, 3, 224)
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, torch.nn.Identity)
    assert big.conv1.stride == (2, 2) and big.conv1.kernel_size == (7, 7)
    assert meta("resnet18", 10, 1, 224).conv1.in_channels == 1


def test_cnn3d_on_volumes():
    model = create_model("cnn3d", 3, 1, 16)
    assert model(torch.randn(2, 1, 16, 16, 16)).shape == (2, 3)
    assert get_entry("cnn3d").volume


def test_mlp_activations_and_options():
    for act in ("relu", "sigmoid", "tanh", "leaky_relu", "gelu"):
        assert create_model("mlp", 3, 1, 8, hidden=[16], activation=act)(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: create_model("resnet9000", 10), "known models: alexnet"),
    (lambda: create_model("alexnet", 10, 3, 32, stem="imagenet"), "at least 63x63; pass --image-size 63"),
    (lambda: create_model("lenet5", 10, 1, 8), "too small"),
    (lambda: create_model("mlp", 10, 1, 8, hidden=[]), "at least one hidden layer"),
    (lambda: create_model("mlp", 10, 1, 8, dropout=1.5), "dropout"),
    (lambda: create_model("mlp", 10, 1, 8, activation="swish"), "unknown activation"),
    (lambda: create_model("mlp", 10, 1, 8, filters=[3]), "no option filters"),
    (lambda: create_model("cnn", 10, 1, 8, filters=[4, 4], kernel=[3]), "1 values but there are 2 blocks"),
    (lambda: create_model("cnn", 1, 1, 8), "num_classes"),
    (lambda: create_model("cnn3d", 2, 1, (8, 8)), "D x H x W"),
])
def test_clear_errors(call, match):
    with pytest.raises(ClasslabError, match=match):
        call()


def test_cli_models_and_summary(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "11,173,962" in out
    assert main(["summary", "cnn", "--input", "1x50x50", "--num-classes", "2", "-o", "filters=16,16,16",
                 "-o", "padding=same,valid,valid", "-o", "pool=2,2,0", "-o", "dense="]) == 0
    assert "Total params: 7,394" in capsys.readouterr().out
    assert main(["summary", "resnet18", "--input", "3x32"]) == 2
    assert main(["summary", "mlp", "-o", "hidden"]) == 2
