"""What the command modules share: the data flags, flags generated from config dataclasses, and parsers
for option values. Importing this never imports torch (``classlab check --help`` stays fast)."""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, fields

from ..errors import ClasslabError


class Command:
    """One subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` runs it (returns an exit code
    or None), ``examples`` ends its --help."""

    def __init__(self, help: str, configure, run, examples: str):
        self.help, self.configure, self.run, self.examples = help, configure, run, examples


# -- values ----------------------------------------------------------------------------------------

def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,3,5, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer, like 1,3,5")
    return values


def _scalar(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ClasslabError(f"model option values must be finite, got '{text}'")
        return value
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
    if len(shape) not in (3, 4) or min(shape) < 1 or max(shape) > 4096:
        raise ClasslabError(f"--input must be CxHxW (e.g. 3x32x32) or CxDxHxW for volumes, each at most 4096, "
                            f"got '{text}'")
    return shape


# -- flags from dataclass fields ---------------------------------------------------------------------

_TYPES = {"int": whole_number, "float": finite_float, "str": str}


def add_config_flags(group, config_class) -> list[str]:
    """One flag per field of ``config_class`` that has ``help`` metadata (see training.config.flag), typed
    from the field's annotation, default None so that what was given can be told apart; returns the names."""
    names = []
    for f in fields(config_class):
        if "help" not in f.metadata:
            continue
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        default = None if f.default is MISSING else f.default
        kind = str(f.type).split("|")[0].strip()
        flag = "--" + f.name.replace("_", "-")
        if kind == "bool":
            group.add_argument(flag, action="store_const", const=True, default=None, help=f.metadata["help"])
        else:
            shown = f" (default {default})" if default not in (None, "") else ""
            group.add_argument(flag, type=_TYPES.get(kind, str), default=None, help=f.metadata["help"] + shown, **extra)
        names.append(f.name)
    return names


def given_flags(args, config_class) -> dict:
    """The values of ``config_class``'s flags that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(config_class)
            if "help" in f.metadata and getattr(args, f.name, None) is not None}


# -- data flags --------------------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_data_flags(p: argparse.ArgumentParser, splits: bool = True) -> None:
    p.add_argument("data", nargs="?", default="digits",
                   help="dataset name (digits, mnist, fashion-mnist, cifar10, cifar100) or a path: image folder, "
                        ".zip, IDX folder, CIFAR folder or .tar.gz, MedMNIST .npz, .csv (default: digits)")
    p.add_argument("--data-dir", help="where named datasets live (default: $CLASSLAB_DATA or ~/.cache/classlab/datasets)")
    p.add_argument("--image-size", type=positive_int, help="resize every image to SIZE x SIZE (default: the most "
                                                           "common size)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert to 1 (grayscale) or 3 (RGB) channels "
                                                                "(default: the majority mode)")
    p.add_argument("--coarse-labels", action="store_true", help="CIFAR-100: use the 20 coarse classes")
    p.add_argument("--max-memory", type=positive_int, metavar="MB", help="image folders whose pixels exceed this are "
                                                                          "decoded lazily, batch by batch (default 4096)")
    p.add_argument("--runs-dir", help="where run directories go (default: $CLASSLAB_RUNS or ./runs)")
    if splits:
        p.add_argument("--split", metavar="MANIFEST", help="reproduce the split in this split.csv (or run directory)")
        p.add_argument("--val-fraction", type=finite_float, default=0.1, help="validation share (default 0.1)")
        p.add_argument("--test-fraction", type=finite_float, default=0.1,
                       help="test share when the data has no official test split (default 0.1)")
        p.add_argument("--seed", type=whole_number, help="random seed for splits, sampling and initialisation (default 0)")
        p.add_argument("--max-train", type=positive_int, help="use at most this many training images (stratified)")
        p.add_argument("--max-eval", type=positive_int, help="use at most this many validation and test images, each")
        p.add_argument("--dedupe", choices=("test", "val"), help="drop test (or validation) images that have a "
                       "near-duplicate in train, for a fair score; split.csv marks them 'dropped'")
        p.add_argument("--corrections", metavar="CSV", help="label corrections (id, action, label) from the "
                       "workbench's review page: relabel or drop training images; test labels stay")


MAX_SEED = 2**32 - 1


def data_options(args):
    """The DataOptions the data flags describe."""
    from ..data.options import DataOptions

    seed = args.seed if args.seed is not None else 0
    if not 0 <= seed <= MAX_SEED:
        raise ClasslabError(f"--seed must be from 0 to {MAX_SEED}, got {seed}")
    return DataOptions(data=args.data, data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
                       coarse_labels=args.coarse_labels, split=args.split, val_fraction=args.val_fraction,
                       test_fraction=args.test_fraction, seed=seed, max_train=args.max_train,
                       max_eval=args.max_eval, max_memory_mb=args.max_memory,
                       dedupe=getattr(args, "dedupe", None), corrections=getattr(args, "corrections", None))
