"""``classlab models`` and ``classlab summary``: the model registry, listed and inspected."""

from __future__ import annotations

import json

from .common import Command, parse_input_shape, parse_model_options, positive_int


def configure_models(p) -> None:
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=positive_int, default=10, help="number of classes (default 10)")


def run_models(args) -> None:
    import torch

    from ..errors import ClasslabError
    from ..models import count_parameters, create_model, get_entry, list_models

    shape = parse_input_shape(args.input)
    print(f"{'model':14}  {'kind':5}  {'parameters':>12}  description (at {args.input}, {args.num_classes} classes)")
    for name in list_models():
        entry = get_entry(name)
        size = shape[1:]
        if entry.volume != (len(shape) == 4):  # a 2D --input for a volume model, or the reverse: its default
            size = (28, 28, 28) if entry.volume else (32, 32)
        try:
            with torch.device("meta"):
                total, _ = count_parameters(create_model(name, args.num_classes, shape[0], size))
            count = f"{total:,}"
        except ClasslabError:
            count = "too small"
        print(f"{name:14}  {entry.kind:5}  {count:>12}  {entry.description}")


def configure_summary(p) -> None:
    p.add_argument("model", help="a name from 'classlab models'")
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW or CxDxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=positive_int, default=10, help="number of classes (default 10)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="model option, repeatable, e.g. -o hidden=128,64 -o dropout=0.5")
    p.add_argument("--json", action="store_true", help="print the table as JSON")


def run_summary(args) -> None:
    import torch

    from ..errors import ClasslabError
    from ..models import create_model, get_entry, summary_table

    if get_entry(args.model).kind != "torch":
        raise ClasslabError(f"'{args.model}' is a NumPy model; summary describes torch models ('classlab models' "
                            "lists its parameter count)")
    shape = parse_input_shape(args.input)
    with torch.device("meta"):  # shapes and counts without allocating a single weight
        model = create_model(args.model, args.num_classes, shape[0], shape[1:], **parse_model_options(args.option))
    text, data = summary_table(model, shape)
    print(json.dumps(data, indent=2) if args.json else text)


COMMANDS = {
    "models": Command("List the registered models with their parameter counts.", configure_models, run_models,
                      "example:\n  classlab models --input 1x28x28 --num-classes 10"),
    "summary": Command(
        "Keras-style table of a model: layers, output shapes, parameters, trainable.", configure_summary, run_summary,
        "examples:\n  classlab summary resnet18 --input 3x32x32\n"
        "  classlab summary mlp --input 3x1x1 --num-classes 2 -o hidden=5,5,5      # the deck's 92 parameters\n"
        "  classlab summary cnn --input 1x50x50 --num-classes 2 -o filters=16,16,16 \\\n"
        "      -o padding=same,valid,valid -o pool=2,2,0 -o dense=               # the deck's 7,394"),
}
