"""The ``classlab`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ClasslabError

EXAMPLES = {
    "explore": "examples:\n  classlab explore digits\n  classlab explore ../shared/data/cifar10/cifar10-images.zip\n"
               "  classlab explore mnist --data-dir ../shared/data",
    "check": "examples:\n  classlab check path/to/images\n  classlab check photos.zip --json",
    "knn": "examples:\n  classlab knn digits --k 1,3,5,7\n  classlab knn mnist --data-dir ../shared/data --k 3 --metric l2\n"
           "  classlab knn cifar10-images.zip --k 1,3,5 --max-train 10000 --max-eval 1000\n"
           "  classlab knn cifar10-images.zip --features mobilenet_v2 --feature-size 96   # k-NN on embeddings",
    "runs": "example:\n  classlab runs --runs-dir runs",
    "download": "examples:\n  classlab download mnist\n  classlab download cifar10 --data-dir ~/datasets",
    "train": "examples:\n  classlab train digits --model mlp\n"
             "  classlab train mnist --data-dir ../shared/data --model workshop-cnn --epochs 3\n"
             "  classlab train cifar10-images.zip --model fastnet --epochs 10 --batch-size 256 --optimizer nesterov \\\n"
             "      --lr 0.375 --momentum 0.85 --weight-decay 1.33e-3 --schedule onecycle --augment flip-crop \\\n"
             "      --crop-padding 2 --label-smoothing 0.2 --tta flip-translate --lookahead   # ~90% in 10 CPU minutes\n"
             "  classlab train --resume runs/20261123-101500-train-mnist     # continue a killed run",
    "predict": "examples:\n  classlab predict runs/<run> photo1.jpg photo2.png\n"
               "  classlab predict runs/<run> folder_of_images/ --top-k 5 --output predictions.csv",
    "lr-find": "examples:\n  classlab lr-find digits --model mlp\n"
               "  classlab lr-find mnist --data-dir ../shared/data --model workshop-cnn --optimizer sgd",
    "export": "examples:\n  classlab export runs/<run> --format onnx\n  classlab export runs/<run> --format torchscript --output bundle/",
    "models": "example:\n  classlab models --input 1x28x28 --num-classes 10",
    "summary": "examples:\n  classlab summary resnet18 --input 3x32x32\n"
               "  classlab summary mlp --input 3x1x1 --num-classes 2 -o hidden=5,5,5      # the deck's 92 parameters\n"
               "  classlab summary cnn --input 1x50x50 --num-classes 2 -o filters=16,16,16 \\\n"
               "      -o padding=same,valid,valid -o pool=2,2,0 -o dense=               # the deck's 7,394",
}


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,3,5, got '{text}'") from None


def _data_args(p: argparse.ArgumentParser, splits: bool = True) -> None:
    p.add_argument("data", nargs="?", default="digits",
                   help="dataset name (digits, mnist, fashion-mnist, cifar10, cifar100) or a path: image folder, "
                        ".zip, IDX folder, CIFAR folder or .tar.gz, MedMNIST .npz, .csv (default: digits)")
    p.add_argument("--data-dir", help="where named datasets live (default: $CLASSLAB_DATA or ~/.cache/classlab/datasets)")
    p.add_argument("--image-size", type=int, help="resize every image to SIZE x SIZE (default: the most common size)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert to 1 (grayscale) or 3 (RGB) channels "
                                                                "(default: the majority mode)")
    p.add_argument("--coarse-labels", action="store_true", help="CIFAR-100: use the 20 coarse classes")
    p.add_argument("--max-memory", type=int, metavar="MB", help="image folders whose pixels exceed this are decoded "
                                                                "lazily, batch by batch (default 4096)")
    p.add_argument("--runs-dir", help="where run directories go (default: $CLASSLAB_RUNS or ./runs)")
    if splits:
        p.add_argument("--split", metavar="MANIFEST", help="reproduce the split in this split.csv (or run directory)")
        p.add_argument("--val-fraction", type=float, default=0.1, help="validation share (default 0.1)")
        p.add_argument("--test-fraction", type=float, default=0.1,
                       help="test share when the data has no official test split (default 0.1)")
        p.add_argument("--seed", type=int, help="random seed for splits, sampling and initialisation (default 0)")
        p.add_argument("--max-train", type=int, help="use at most this many training images (stratified)")
        p.add_argument("--max-eval", type=int, help="use at most this many validation and test images, each")


def _options(args):
    from .prepare import DataOptions

    for name in ("max_train", "max_eval", "max_memory"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ClasslabError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return DataOptions(data=args.data, data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
                       coarse_labels=args.coarse_labels, split=args.split, val_fraction=args.val_fraction,
                       test_fraction=args.test_fraction, seed=args.seed if args.seed is not None else 0, max_train=args.max_train,
                       max_eval=args.max_eval, max_memory_mb=args.max_memory)


def cmd_explore(args) -> None:
    from .explore import explore

    result = explore(_options(args), args.runs_dir)
    print(result["text"])
    print(f"report: {result['report']}")


def cmd_check(args) -> int:
    from .doctor import run_check

    result = run_check(args.data, args.data_dir, args.min_size, args.runs_dir)
    print(json.dumps(result["report"], indent=2) if args.json else result["text"])
    print(f"report: {result['run_dir'] / 'check.txt'} (JSON: {result['run_dir'] / 'check.json'})", file=sys.stderr)
    r = result["report"]
    return 1 if args.strict and (r["errors"] or r["warnings"]) else 0


def cmd_knn(args) -> None:
    from .knn_run import run_knn

    features = None
    if args.features:
        features = {"backbone": args.features, "weights": args.weights, "image_size": args.feature_size}
    result = run_knn(_options(args), args.k, args.metric, args.device, args.runs_dir, features=features)
    print(result["evaluation"].text())
    print(f"k = {result['k']} (chosen on validation)")
    print(f"report: {result['report']}")


def cmd_runs(args) -> None:
    from .runs import list_runs

    rows = list_runs(args.runs_dir)
    if not rows:
        print("no runs yet; try: classlab knn digits")
        return
    print(f"{'run':60}  {'command':8}  {'accuracy':>8}  {'macro F1':>8}")
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "-"
        f1 = f"{r['macro_f1']:.4f}" if r.get("macro_f1") is not None else "-"
        print(f"{r['run']:60}  {r['command'] or '-':8}  {acc:>8}  {f1:>8}")


def _scalar(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_options(pairs: list[str] | None) -> dict:
    """-o key=value: ints, floats, true/false, strings; commas make lists ('dense=' is an empty list)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClasslabError(f"model options look like key=value (e.g. -o hidden=128,64), got '{pair}'")
        options[key.replace("-", "_")] = [_scalar(v) for v in value.split(",") if v] if ("," in value or not value) \
            else _scalar(value)
    return options


def parse_input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ClasslabError(f"--input must be CxHxW (e.g. 3x32x32) or CxDxHxW for volumes, got '{text}'")
    return shape


TRAIN_FLAGS = ("model", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
               "warmup_epochs", "step_size", "label_smoothing", "loss", "grad_clip", "augment", "class_weight",
               "sampler", "early_stopping", "seed", "deterministic", "precision", "device", "compile", "tensorboard",
               "tta", "crop_padding", "lookahead")


def _train_config(args):
    from .training import TrainConfig
    from .training.config import load_config_file

    values = load_config_file(args.config) if args.config else {}
    given = set(values)
    for key in TRAIN_FLAGS:
        value = getattr(args, key)
        if value is not None and value is not False:
            values[key] = value
            given.add(key)
    if args.option:
        values["model_options"] = {**values.get("model_options", {}), **parse_model_options(args.option)}
        given.add("model_options")
    return TrainConfig.from_dict(values), given


def cmd_train(args) -> None:
    from .training import run_train

    cfg, given = _train_config(args)
    if args.resume is None:
        cfg.validate()
    result = run_train(_options(args), cfg, args.runs_dir, resume=args.resume, given=given)
    if "evaluation" not in result:  # a DDP rank other than 0: rank 0 reports
        return
    print(result["evaluation"].text())
    print(f"report: {result['report']}")


def cmd_lr_find(args) -> None:
    from .training.lr_find import lr_find

    cfg, _ = _train_config(args)
    result = lr_find(_options(args), cfg, args.start, args.end, args.steps, args.runs_dir)
    print(f"suggested learning rate: {result['suggested_lr']:.2e} (steepest descent; minimum loss / 10: "
          f"{result['min_loss_lr_over_10']:.2e})")
    print(f"plot: {result['run_dir'] / 'lr_find.png'}")


def cmd_export(args) -> None:
    from .export import export_run

    result = export_run(args.run, args.format, args.output)
    print(f"bundle: {result['bundle']} (matches PyTorch to {result['max_abs_difference']:.1e})")


def cmd_predict(args) -> None:
    from .predictor import TrainedRun, default_predictions_path, write_predictions_csv

    if args.top_k < 1:
        raise ClasslabError(f"--top-k must be at least 1, got {args.top_k}")
    run = TrainedRun.load(args.run, args.device)
    results = run.predict(args.inputs, args.top_k)
    for r in results:
        print(f"{r['input']}: " + ", ".join(f"{label} {p:.3f}" for label, p in r["top"]))
    path = write_predictions_csv(results, Path(args.output) if args.output else default_predictions_path(run.run_dir))
    print(f"predictions: {path}", file=sys.stderr)


def cmd_models(args) -> None:
    import torch

    from .models import count_parameters, create_model, get_entry, list_models

    shape = parse_input_shape(args.input)
    print(f"{'model':14}  {'parameters':>12}  description (at {args.input}, {args.num_classes} classes)")
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
        print(f"{name:14}  {count:>12}  {entry.description}")


def cmd_summary(args) -> None:
    import torch

    from .models import create_model, summary_table

    shape = parse_input_shape(args.input)
    with torch.device("meta"):  # shapes and counts without allocating a single weight
        model = create_model(args.model, args.num_classes, shape[0], shape[1:], **parse_model_options(args.option))
    text, data = summary_table(model, shape)
    print(json.dumps(data, indent=2) if args.json else text)


def cmd_download(args) -> None:
    from .data import download

    folder = download(args.name, args.data_dir, args.mirror)
    print(f"{args.name}: files verified in {folder}")


def _train_args(p: argparse.ArgumentParser):
    t = p.add_argument_group("training (defaults: mlp, 10 epochs, batch 64, Adam, lr 1e-3)")
    t.add_argument("--model", help="a name from 'classlab models'")
    t.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="model option, e.g. -o hidden=256")
    t.add_argument("--config", help="JSON or YAML file of training options (flags override it)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--optimizer", help="sgd, nesterov, adam, adamw, rmsprop")
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--schedule", help="constant, step, cosine, onecycle")
    t.add_argument("--warmup-epochs", type=float)
    t.add_argument("--step-size", type=int, help="epochs between x0.1 steps (schedule step)")
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--loss", help="ce (cross-entropy) or mse (on one-hot targets)")
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    t.add_argument("--augment", help="none, crop, flip-crop, flip-crop-jitter (+ rotation, colour), randaugment, "
                                     "mixup, cutmix (both after flip-crop)")
    t.add_argument("--class-weight", help="balanced: weight the loss by inverse class frequency")
    t.add_argument("--sampler", help="balanced: draw batches with equal class probability")
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after this many epochs without a "
                                                                         "better validation accuracy")
    t.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible, slower)")
    t.add_argument("--precision", help="auto (bf16 where supported), bf16, fp32")
    t.add_argument("--device", help="auto, cpu, cuda, mps")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (faster steps, slower start)")
    t.add_argument("--tta", nargs="?", const="flip", help="test-time augmentation for scoring and predicting: flip "
                                                          "(the default when given alone: image + mirror image) or "
                                                          "flip-translate (six views)")
    t.add_argument("--lookahead", action="store_true", help="every 5 steps, pull the weights towards their running "
                                                             "average (helps short schedules)")
    t.add_argument("--crop-padding", type=int, help="pixels the crop augmentations translate by, at most (default 4)")
    t.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard (tensorboard --logdir runs)")
    return t


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classlab", description="Image classification workbench: explore, check, "
                                     "split, k-NN and complete evaluation reports.",
                                     epilog="example:\n  classlab knn digits --k 1,3,5",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"classlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("explore", "Sample grid, class distribution and statistics of a dataset.", cmd_explore)
    _data_args(p)
    p = add("check", "Dataset doctor: corrupt files, wrong extensions, duplicates, leakage, imbalance.", cmd_check)
    _data_args(p, splits=False)
    p.add_argument("--min-size", type=int, default=16, help="flag images smaller than this many pixels (default 16)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of text")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is found (for scripts and CI)")
    p = add("knn", "Exact k-nearest neighbours on raw pixels, k chosen on validation, full test report.", cmd_knn)
    _data_args(p)
    p.add_argument("--k", type=_int_list, default=[1, 3, 5], help="k values to try, e.g. 1,3,5 (default 1,3,5)")
    p.add_argument("--metric", choices=("l2", "l1", "cosine"), default="l2", help="distance (default l2)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--features", metavar="BACKBONE", help="search on a pretrained backbone's embeddings instead of "
                   "pixels (a torchvision name or a classlab run)")
    p.add_argument("--weights", help="weights file for --features (default: the torch hub cache, then a download)")
    p.add_argument("--feature-size", type=int, help="input size for --features (default: the size the weights "
                                                     "were trained at)")
    p = add("runs", "List runs with their headline metrics.", cmd_runs)
    p.add_argument("--runs-dir", help="where run directories are (default: $CLASSLAB_RUNS or ./runs)")
    p = add("train", "Train a model: validation picks the best epoch, the test split is scored once.", cmd_train)
    _data_args(p)
    t = _train_args(p)
    t.add_argument("--resume", metavar="RUN", help="continue a killed or finished run from its last.pt")
    from .transfer.cli import EXAMPLE as TRANSFER_EXAMPLE, add_command as add_transfer

    EXAMPLES["transfer"] = TRANSFER_EXAMPLE
    add_transfer(add, _data_args, _options)
    p = add("lr-find", "Learning-rate range test: a plot and a suggested learning rate.", cmd_lr_find)
    _data_args(p)
    _train_args(p)
    p.add_argument("--start", type=float, default=1e-7, help="smallest learning rate (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="largest learning rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="batches to try (default 100)")
    p = add("predict", "Top-k labels for new images, with the run's own preprocessing.", cmd_predict)
    p.add_argument("run", help="a training run directory")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--top-k", type=int, default=3, help="how many labels per image (default 3)")
    p.add_argument("--output", help="CSV path (default: RUN/predict-<time>.csv)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p = add("export", "Write a bundle: model (ONNX or TorchScript), class names, preprocessing.", cmd_export)
    p.add_argument("run", help="a training run directory")
    p.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--output", help="bundle folder (default: RUN/export-FORMAT)")
    p = add("models", "List the registered models with their parameter counts.", cmd_models)
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=int, default=10, help="number of classes (default 10)")
    p = add("summary", "Keras-style table of a model: layers, output shapes, parameters, trainable.", cmd_summary)
    p.add_argument("model", help="a name from 'classlab models'")
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW or CxDxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="model option, repeatable, e.g. -o hidden=128,64 -o dropout=0.5")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    from .cli_learn import EXAMPLES as LEARN_EXAMPLES, add_commands

    EXAMPLES.update(LEARN_EXAMPLES)
    add_commands(add, _data_args, _options)
    p = add("download", "Download a named dataset's official files, checksummed.", cmd_download)
    p.add_argument("name", help="mnist, fashion-mnist, cifar10 or cifar100")
    p.add_argument("--data-dir", help="target folder (default: $CLASSLAB_DATA or ~/.cache/classlab/datasets)")
    p.add_argument("--mirror", help="base URL of a mirror holding the same files")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ClasslabError as e:
        print(f"classlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("classlab: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
