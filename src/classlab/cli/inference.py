"""``classlab predict``, ``evaluate``, ``export`` and ``visualize``: what a trained run does for new images."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import Command, positive_int, whole_number


def configure_predict(p) -> None:
    p.add_argument("run", help="a run with a model: train, transfer, k-NN on pixels, the NumPy MLP, or an "
                               "evaluation of one")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many labels per image (default 3)")
    p.add_argument("--output", help="CSV path (default: RUN/predict-<time>.csv)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--explain", action="store_true", help="also write, per image, its Grad-CAM (or occlusion) "
                                                          "map and its nearest training images")


def run_predict(args) -> None:
    from ..errors import ClasslabError
    from ..trained.model import load_run_model
    from ..trained.network import default_predictions_path, write_predictions_csv

    if args.output and Path(args.output).is_dir():
        raise ClasslabError(f"--output {args.output} is a folder; give a CSV file path")
    run = load_run_model(args.run, args.device)  # a network, k-NN, the NumPy MLP, or an evaluation's model
    results = run.predict(args.inputs, args.top_k)
    for r in results:
        print(f"{r['input']}: " + ", ".join(f"{label} {p:.3f}" for label, p in r["top"]))
    path = write_predictions_csv(results, Path(args.output) if args.output else default_predictions_path(Path(args.run)))
    print(f"predictions: {path}", file=sys.stderr)
    labelled = [i for i in args.inputs if _named_like(Path(i), run.class_names)]
    if labelled:
        print(f"note: {labelled[0]} holds folders named like the model's classes; 'classlab evaluate {args.run} "
              f"{labelled[0]}' scores them against those labels, with the full report", file=sys.stderr)
    if args.explain:
        from ..commands.explain import explain_predictions
        from ..trained.network import image_files

        images, files = run.load_images(image_files(args.inputs))
        folder = explain_predictions(Path(args.run), images, [str(f) for f in files], path.with_suffix(""))
        print(f"explanations: {folder}", file=sys.stderr)


def _named_like(folder: Path, class_names: list[str]) -> bool:
    """Whether every visible subfolder of ``folder`` (at least one) is named as one of the classes."""
    try:
        subfolders = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return False
    return bool(subfolders) and set(subfolders) <= set(class_names)


def configure_evaluate(p) -> None:
    from ..commands.evaluate import SPLITS
    from ..inference.tta import TTA_MODES

    p.add_argument("run", help="a run with a model: train, transfer, k-NN on pixels or the NumPy MLP")
    p.add_argument("data", help="labelled images: a dataset name (mnist, cifar10, ...) or a path (class folders, "
                                ".zip, IDX, CIFAR, .npz, .csv), with class names as in training")
    p.add_argument("--data-dir", help="where named datasets live (default: $CLASSLAB_DATA or "
                                      "~/.cache/classlab/datasets)")
    p.add_argument("--split", choices=SPLITS, default="auto", help="which images: the data's own test (val, train) "
                   "split, or all; auto (default): its test split where it has one, else all")
    p.add_argument("--coarse-labels", action="store_true", help="CIFAR-100: use the 20 coarse classes")
    p.add_argument("--drop-seen", action="store_true", help="leave out images identical to ones the run trained or "
                                                            "validated on")
    p.add_argument("--max-images", type=positive_int, help="score a stratified sample of at most this many")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the run's own); "
                   "compare an evaluation with and without it on the same images")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--seed", type=whole_number, default=0, help="seed of the sample and the bootstrap intervals")
    p.add_argument("--runs-dir", help="where the evaluation's run directory goes (default: $CLASSLAB_RUNS or ./runs)")


def run_evaluate(args) -> None:
    from ..commands.evaluate import EvaluateConfig
    from ..commands.evaluate import run_evaluate as evaluate
    from ..errors import ClasslabError
    from .common import MAX_SEED

    if not 0 <= args.seed <= MAX_SEED:
        raise ClasslabError(f"--seed must be from 0 to {MAX_SEED}, got {args.seed}")
    cfg = EvaluateConfig(split=args.split, drop_seen=args.drop_seen, max_images=args.max_images, device=args.device,
                         seed=args.seed, coarse_labels=args.coarse_labels, tta=args.tta)
    result = evaluate(args.run, args.data, args.data_dir, cfg, args.runs_dir)
    m, extra = result.metrics, result.details["evaluate"]
    print(f"{extra['images']} images: accuracy {m['accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f}, "
          f"macro F1 {m['macro_avg']['f1']:.4f}")
    print(f"report: {result.report}")


def configure_export(p) -> None:
    p.add_argument("run", help="a training run directory")
    p.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--output", help="bundle folder (default: RUN/export-FORMAT)")


def run_export(args) -> None:
    from ..trained.export import export_run

    result = export_run(args.run, args.format, args.output)
    print(f"bundle: {result['bundle']} (matches PyTorch to {result['max_abs_difference']:.1e})")


def configure_visualize(p) -> None:
    p.add_argument("run", help="a training run directory")
    p.add_argument("--filters", action="store_true", help="the first convolution's filters")
    p.add_argument("--feature-maps", metavar="IMAGE", help="every convolution layer's maps for this image")
    p.add_argument("--output", help="folder for the PNGs (default: RUN/visualize)")


def run_visualize(args) -> None:
    from ..errors import ClasslabError
    from ..trained.visualize import feature_maps, filters

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


COMMANDS = {
    "predict": Command("Top-k labels for new images, with the run's own preprocessing.", configure_predict,
                       run_predict, "examples:\n  classlab predict runs/<run> photo1.jpg photo2.png\n"
                       "  classlab predict runs/<run> folder_of_images/ --top-k 5 --output predictions.csv"),
    "evaluate": Command("Score a trained model (or k-NN) on other labelled images (a new test set, another "
                        "dataset), with the full report: the run's preprocessing and TTA, classes matched by name, "
                        "images it trained on counted (--drop-seen leaves them out).", configure_evaluate, run_evaluate,
                        "examples:\n  classlab evaluate runs/<run> new_photos/\n"
                        "  classlab evaluate runs/<mnist run> mnist --data-dir ../shared/data --max-images 2000\n"
                        "  classlab evaluate runs/<run> photos.zip --split all --drop-seen"),
    "export": Command("Write a bundle: model (ONNX or TorchScript), class names, preprocessing.", configure_export,
                      run_export, "examples:\n  classlab export runs/<run> --format onnx\n"
                      "  classlab export runs/<run> --format torchscript --output bundle/"),
    "visualize": Command("First-layer filters and per-layer feature maps of a trained CNN, as PNG grids.",
                         configure_visualize, run_visualize, "examples:\n  classlab visualize runs/<run> --filters\n"
                         "  classlab visualize runs/<run> --feature-maps photo.png"),
}
