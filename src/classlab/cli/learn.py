"""The learning commands: ``classlab plot``, ``conv-size`` and ``workshop`` (the decks' whole path)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ClasslabError
from .common import Command, add_data_flags, data_options, whole_number


def configure_plot(p) -> None:
    p.add_argument("what", nargs="?", default="activations",
                   help="activations (with derivatives) or neuron (the decks' sigmoid neuron, trained)")
    p.add_argument("--output", help="PNG path (default activations.png / neuron.png)")


def configure_conv_size(p) -> None:
    p.add_argument("--input", required=True, help="input size: N, HxW or DxHxW")
    p.add_argument("--kernel", type=whole_number, default=3, help="kernel size k (default 3)")
    p.add_argument("--padding", type=whole_number, default=0, help="padding p (default 0)")
    p.add_argument("--stride", type=whole_number, help="stride s (default 1; for --pool, the kernel)")
    p.add_argument("--pool", action="store_true", help="a pooling layer instead of a convolution")
    p.add_argument("--layers", help="a stack instead, e.g. conv3p1,pool2,conv3,pool2,conv3")
    p.add_argument("--json", action="store_true", help="print JSON")


def configure_workshop(p) -> None:
    add_data_flags(p)
    p.add_argument("--budget", help="fit the whole path in this time, e.g. 5m (scales epochs and subsets)")
    p.add_argument("--weights", help="MobileNetV2 weights file for the transfer stop (default: the torch hub cache)")


def run_plot(args) -> None:
    from ..scratch.activations import plot_activations
    from ..scratch.neuron import plot_neuron, sigmoid_neuron

    if args.what == "activations":
        print(f"plot: {plot_activations(Path(args.output or 'activations.png'))}")
    elif args.what == "neuron":  # the decks' sigmoid neuron: weights and outputs before and after training
        trace = sigmoid_neuron()
        print(trace.text())
        print(f"plot: {plot_neuron(trace, Path(args.output or 'neuron.png'))}")
    else:
        raise ClasslabError(f"unknown plot '{args.what}'; available: activations, neuron")


def run_conv_size(args) -> None:
    from ..scratch.shapes import parse_input, parse_layers, table, trace

    size = parse_input(args.input)
    if args.layers:
        layers = parse_layers(args.layers)
    else:
        kind = "pool" if args.pool else "conv"
        stride = args.stride if args.stride is not None else (args.kernel if args.pool else 1)
        layers = [{"layer": kind, "kind": kind, "kernel": args.kernel, "stride": stride, "padding": args.padding}]
    rows = trace(size, layers)
    print(json.dumps({"input": size, "layers": rows}, indent=2) if args.json else table(size, rows))


def parse_budget(text: str | None) -> float | None:
    """'90s', '5m', '1h', '300' (seconds) -> seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        seconds = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ClasslabError(f"--budget takes a duration like 90s, 5m or 1h, got '{text}'") from None
    if not math.isfinite(seconds) or seconds < 10:
        raise ClasslabError(f"--budget {text} is too short to run the path; give at least 10s (5m suits a laptop)")
    return seconds


def run_workshop_command(args) -> None:
    from ..commands.workshop import run_workshop

    result = run_workshop(data_options(args), parse_budget(args.budget), args.runs_dir, weights=args.weights,
                          progress=True)
    print(result.details["table"])
    print(f"report: {result.report}")
    print(f"look at every step in the workbench: classlab serve --runs-dir {result.run_dir.parent}")


COMMANDS = {
    "plot": Command("Plots of the building blocks: activation functions with their derivatives.", configure_plot,
                    run_plot, "examples:\n  classlab plot activations\n"
                    "  classlab plot neuron      # the decks' sigmoid neuron, before and after"),
    "conv-size": Command(
        "Output sizes of convolution and pooling: n_out = floor((n_in + 2p - k) / s) + 1.", configure_conv_size,
        run_conv_size, "examples:\n  classlab conv-size --input 32 --kernel 3 --padding 1 --stride 2\n"
        "  classlab conv-size --input 50 --layers conv3p1,pool2,conv3,pool2,conv3    # the deck's 50x50 CNN\n"
        "  classlab conv-size --input 16x64x64 --layers conv3p1,pool2                 # 3D: DxHxW"),
    "workshop": Command(
        "The decks' path in one command: explore, k-NN, scratch MLP, MLP, CNN, transfer; compared.",
        configure_workshop, run_workshop_command, "examples:\n  classlab workshop digits\n"
        "  classlab workshop mnist --data-dir ../shared/data --budget 5m\n"
        "  classlab workshop ../shared/data/cifar10/cifar10-images.zip --budget 10m"),
}
