"""``classlab knn``: exact k-nearest neighbours on pixels or on a backbone's embeddings."""

from __future__ import annotations

from .common import Command, add_data_flags, data_options, int_list, positive_int


def configure(p) -> None:
    add_data_flags(p)
    p.add_argument("--k", type=int_list, default=[1, 3, 5], help="k values to try, e.g. 1,3,5 (default 1,3,5)")
    p.add_argument("--metric", choices=("l2", "l1", "cosine"), default="l2", help="distance (default l2)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--features", metavar="BACKBONE", help="search on a pretrained backbone's embeddings instead of "
                   "pixels (a torchvision name or a classlab run)")
    p.add_argument("--weights", help="weights file for --features (default: the torch hub cache, then a download)")
    p.add_argument("--feature-size", type=positive_int, help="input size for --features (default: the size the "
                                                             "weights were trained at; 160 for images of at most 64 px)")


def run(args) -> None:
    from ..commands.knn import run_knn

    features = None
    if args.features:
        features = {"backbone": args.features, "weights": args.weights, "image_size": args.feature_size}
    result = run_knn(data_options(args), args.k, args.metric, args.device, args.runs_dir, features=features)
    print(result.evaluation.text())
    print(f"k = {result.details['k']} (chosen on validation)")
    print(f"report: {result.report}")


COMMANDS = {"knn": Command(
    "Exact k-nearest neighbours on raw pixels, k chosen on validation, full test report.", configure, run,
    "examples:\n  classlab knn digits --k 1,3,5,7\n  classlab knn mnist --data-dir ../shared/data --k 3 --metric l2\n"
    "  classlab knn cifar10-images.zip --k 1,3,5 --max-train 10000 --max-eval 1000\n"
    "  classlab knn cifar10-images.zip --features mobilenet_v2 --feature-size 96   # k-NN on embeddings")}
