"""The learning commands of the CLI: ``plot``, ``conv-size``, ``visualize`` and ``workshop``
(kept apart from cli.py so each file stays one screenful of concerns)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ClasslabError

EXAMPLES = {
    "plot": "examples:\n  classlab plot activations\n  classlab plot neuron      # the decks' sigmoid neuron, before and after",
    "conv-size": "examples:\n  classlab conv-size --input 32 --kernel 3 --padding 1 --stride 2\n"
                 "  classlab conv-size --input 50 --layers conv3p1,pool2,conv3,pool2,conv3    # the deck's 50x50 CNN\n"
                 "  classlab conv-size --input 16x64x64 --layers conv3p1,pool2                 # 3D: DxHxW",
    "visualize": "examples:\n  classlab visualize runs/<run> --filters\n"
                 "  classlab visualize runs/<run> --feature-maps photo.png",
    "workshop": "examples:\n  classlab workshop digits\n"
                "  classlab workshop mnist --data-dir ../shared/data --budget 5m\n"
                "  classlab workshop ../shared/data/cifar10/cifar10-images.zip --budget 10m",
}


def cmd_plot(args) -> None:
    from .scratch.activations import plot_activations
    from .scratch.neuron import plot_neuron, sigmoid_neuron

    if args.what == "activations":
        print(f"plot: {plot_activations(Path(args.output or 'activations.png'))}")
    elif args.what == "neuron":  # the decks' sigmoid neuron: weights and outputs before and after training
        trace = sigmoid_neuron()
        print(trace.text())
        print(f"plot: {plot_neuron(trace, Path(args.output or 'neuron.png'))}")
    else:
        raise ClasslabError(f"unknown plot '{args.what}'; available: activations, neuron")


def cmd_conv_size(args) -> None:
    from .scratch.shapes import parse_input, parse_layers, table, trace

    size = parse_input(args.input)
    if args.layers:
        layers = parse_layers(args.layers)
    else:
        kind = "pool" if args.pool else "conv"
        stride = args.stride if args.stride is not None else (args.kernel if args.pool else 1)
        layers = [{"layer": kind, "kind": kind, "kernel": args.kernel, "stride": stride, "padding": args.padding}]
    rows = trace(size, layers)
    print(json.dumps({"input": size, "layers": rows}, indent=2) if args.json else table(size, rows))


def cmd_visualize(args) -> None:
    from .visualize import feature_maps, filters

    if not args.filters and not args.feature_maps:
        raise ClasslabError("say what to show: --filters and/or --feature-maps IMAGE")
    if args.filters:
        result = filters(args.run, args.output)
        print(f"filters of '{result['layer']}' {result['shape']}: {result['png']}")
    if args.feature_maps:
        result = feature_maps(args.run, args.feature_maps, args.output)
        for layer in result["layers"]:
            print(f"{layer['layer']:24} {'x'.join(map(str, layer['shape'])):>14}  {layer['png']}")
        print(f"feature maps: {result['dir']}")


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
    if seconds < 10:
        raise ClasslabError(f"--budget {text} is too short to run the path; give at least 10s (5m suits a laptop)")
    return seconds


def cmd_workshop(args, options) -> None:
    from .workshop import run_workshop

    result = run_workshop(options(args), parse_budget(args.budget), args.runs_dir, weights=args.weights,
                          progress=True)
    print(result["table"])
    print(f"report: {result['report']}")


def add_commands(add, data_args, options) -> None:
    """``add(name, help, func)`` makes a subparser; ``data_args`` / ``options`` are cli.py's data flags."""
    p = add("plot", "Plots of the building blocks: activation functions with their derivatives.", cmd_plot)
    p.add_argument("what", nargs="?", default="activations",
                   help="activations (with derivatives) or neuron (the decks' sigmoid neuron, trained)")
    p.add_argument("--output", help="PNG path (default activations.png / neuron.png)")
    p = add("conv-size", "Output sizes of convolution and pooling: n_out = floor((n_in + 2p - k) / s) + 1.",
            cmd_conv_size)
    p.add_argument("--input", required=True, help="input size: N, HxW or DxHxW")
    p.add_argument("--kernel", type=int, default=3, help="kernel size k (default 3)")
    p.add_argument("--padding", type=int, default=0, help="padding p (default 0)")
    p.add_argument("--stride", type=int, help="stride s (default 1; for --pool, the kernel)")
    p.add_argument("--pool", action="store_true", help="a pooling layer instead of a convolution")
    p.add_argument("--layers", help="a stack instead, e.g. conv3p1,pool2,conv3,pool2,conv3")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("visualize", "First-layer filters and per-layer feature maps of a trained CNN, as PNG grids.",
            cmd_visualize)
    p.add_argument("run", help="a training run directory")
    p.add_argument("--filters", action="store_true", help="the first convolution's filters")
    p.add_argument("--feature-maps", metavar="IMAGE", help="every convolution layer's maps for this image")
    p.add_argument("--output", help="folder for the PNGs (default: RUN/visualize)")
    p = add("workshop", "The decks' path in one command: explore, k-NN, scratch MLP, MLP, CNN, transfer; compared.",
            lambda args: cmd_workshop(args, options))
    data_args(p)
    p.add_argument("--budget", help="fit the whole path in this time, e.g. 5m (scales epochs and subsets)")
    p.add_argument("--weights", help="MobileNetV2 weights file for the transfer stop (default: the torch hub cache)")
