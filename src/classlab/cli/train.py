"""``classlab train`` and ``classlab lr-find``: their flags are TrainConfig's fields."""

from __future__ import annotations

from .common import Command, add_config_flags, add_data_flags, data_options, finite_float, given_flags, \
    parse_model_options, positive_int


def add_training_flags(p):
    from ..training.config import TrainConfig

    t = p.add_argument_group("training (defaults: mlp, 10 epochs, batch 64, Adam, lr 1e-3)")
    add_config_flags(t, TrainConfig)
    t.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="model option, e.g. -o hidden=256")
    t.add_argument("--config", help="JSON or YAML file of training options (flags override it)")
    return t


def train_config(args):
    """(TrainConfig, the option names given): a config file, then the flags, then -o options."""
    from ..training.config import TrainConfig, load_config_file

    values = load_config_file(args.config) if args.config else {}
    values.update(given_flags(args, TrainConfig))
    if args.seed is not None:
        values["seed"] = args.seed
    if args.option:
        values["model_options"] = {**values.get("model_options", {}), **parse_model_options(args.option)}
    return TrainConfig.from_dict(values), set(values)


def configure_train(p) -> None:
    add_data_flags(p)
    t = add_training_flags(p)
    t.add_argument("--resume", metavar="RUN", help="continue a killed or finished run from its last.pt")


def run_train(args) -> None:
    from ..commands.train import run_train as train

    cfg, given = train_config(args)
    if args.resume is None:
        cfg.validate()
    result = train(data_options(args), cfg, args.runs_dir, resume=args.resume, given=given)
    if result.evaluation is None:  # a DDP rank other than 0: rank 0 reports
        return
    print(result.evaluation.text())
    print(f"report: {result.report}")


def configure_lr_find(p) -> None:
    add_data_flags(p)
    add_training_flags(p)
    p.add_argument("--start", type=finite_float, default=1e-7, help="smallest learning rate (default 1e-7)")
    p.add_argument("--end", type=finite_float, default=10.0, help="largest learning rate (default 10)")
    p.add_argument("--steps", type=positive_int, default=100, help="batches to try (default 100)")


def run_lr_find(args) -> None:
    from ..commands.lr_find import lr_find

    cfg, _ = train_config(args)
    result = lr_find(data_options(args), cfg, args.start, args.end, args.steps, args.runs_dir)
    print(f"suggested learning rate: {result.details['suggested_lr']:.2e} (steepest descent; minimum loss / 10: "
          f"{result.details['min_loss_lr_over_10']:.2e})")
    print(f"plot: {result.run_dir / 'lr_find.png'}")


COMMANDS = {
    "train": Command(
        "Train a model: validation picks the best epoch, the test split is scored once.", configure_train, run_train,
        "examples:\n  classlab train digits --model mlp\n"
        "  classlab train mnist --data-dir ../shared/data --model workshop-cnn --epochs 3\n"
        "  classlab train cifar10-images.zip --model fastnet --epochs 10 --batch-size 256 --optimizer nesterov \\\n"
        "      --lr 0.375 --momentum 0.85 --weight-decay 1.33e-3 --schedule onecycle --augment flip-crop \\\n"
        "      --crop-padding 2 --label-smoothing 0.2 --tta flip-translate --lookahead   # ~90% in 10 CPU minutes\n"
        "  classlab train mnist --data-dir ../shared/data --model cnn -o filters=16,32,64 -o batch_norm=true \\\n"
        "      --epochs 1 --batch-size 128 --optimizer nesterov --lr 0.05 --weight-decay 5e-4 --schedule onecycle \\\n"
        "      --label-smoothing 0.1 --val-fraction 0   # 99% in about 7 CPU seconds\n"
        "  classlab train digits --model scratch-mlp -o hidden=128 --epochs 30    # the NumPy MLP\n"
        "  classlab train --resume runs/20261123-101500-train-mnist     # continue a killed run"),
    "lr-find": Command(
        "Learning-rate range test: a plot and a suggested learning rate.", configure_lr_find, run_lr_find,
        "examples:\n  classlab lr-find digits --model mlp\n"
        "  classlab lr-find mnist --data-dir ../shared/data --model workshop-cnn --optimizer sgd"),
}
