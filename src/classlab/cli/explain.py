"""``classlab explain RUN``: top losses, confused pairs, attribution maps, calibration, embedding map."""

from __future__ import annotations

from .common import Command, positive_int


def configure(p) -> None:
    p.add_argument("run", help="a run directory (train, transfer, knn, or the NumPy MLP)")
    p.add_argument("--top", type=positive_int, default=64, help="how many of the worst mistakes to show (default 64)")
    p.add_argument("--method", default="auto", choices=("auto", "gradcam", "occlusion"),
                   help="attribution: Grad-CAM for convolutional networks, occlusion for any model (default auto)")
    p.add_argument("--layer", help="Grad-CAM's layer, by name (default: the last 2D convolution)")
    p.add_argument("--tsne", action="store_true", help="also a t-SNE map of the test embeddings (slow)")


def run(args) -> None:
    from ..commands.explain import explain

    result = explain(args.run, args.top, args.method, args.layer, args.tsne)
    d = result.details
    print(f"{d['mistakes']} of {d['test_images']} test images misclassified")
    for pair in d["most_confused"][:5]:
        print(f"  {pair['true']} -> {pair['predicted']}: {pair['count']}")
    c = d["calibration"]
    line = f"ECE {c['ece']:.4f}"
    if "temperature" in c:
        line += f" -> {c['ece_after']:.4f} with temperature {c['temperature']:.3f} (saved; predict and export use it)"
    print(line)
    print(f"attribution: {d.get('attribution')}")
    print(f"report: {result.report}")


COMMANDS = {"explain": Command(
    "Explain a run: top losses, confused pairs with a grid per confusion cell, Grad-CAM or occlusion maps, "
    "calibration with temperature scaling, an embedding map.", configure, run,
    "examples:\n  classlab explain runs/<cnn run>\n  classlab explain runs/<knn run> --method occlusion\n"
    "  classlab explain runs/<transfer run> --layer backbone.features.18.0 --tsne")}
