"""The ``classlab`` command line: a thin layer over the Python API.

``COMMANDS`` maps each subcommand to the module that defines it (its flags and what it runs, in
``COMMANDS`` there too) and its one-line summary. Only the chosen command's module is imported, and none of them imports torch
before it runs, so ``classlab check --help`` answers at once. A ``ClasslabError`` is printed on one
line and exits with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ClasslabError
from ..threads import share_cores_politely

COMMANDS = {  # name -> (module under classlab.cli that defines it, its line in the top-level --help), in the
    # order --help lists them; the line is here so that --help imports no command module
    "explore": ("data_commands", "sample grid, class distribution and statistics of a dataset"),
    "check": ("data_commands", "dataset doctor: corrupt files, duplicates, leakage, imbalance"),
    "knn": ("knn", "exact k-nearest neighbours on pixels or embeddings"),
    "runs": ("data_commands", "list runs with their headline metrics"),
    "train": ("train", "train a model (any from 'classlab models')"),
    "transfer": ("transfer", "transfer learning: pretrained backbone, cached features, fine-tuning"),
    "lr-find": ("train", "learning-rate range test"),
    "predict": ("inference", "top-k labels for new images"),
    "evaluate": ("inference", "score a trained model on other labelled images, full report"),
    "export": ("inference", "ONNX / TorchScript bundle with class names and preprocessing"),
    "models": ("models", "list the registered models"),
    "summary": ("models", "Keras-style table of a model"),
    "plot": ("learn", "activation functions, the decks' sigmoid neuron"),
    "conv-size": ("learn", "output sizes of convolution and pooling"),
    "visualize": ("inference", "filters and feature maps of a trained CNN"),
    "workshop": ("learn", "the decks' whole path, compared"),
    "explain": ("explain", "top losses, confused pairs, Grad-CAM / occlusion, calibration"),
    "compare": ("compare", "is run B really better than run A, and on which images"),
    "download": ("data_commands", "download a named dataset, checksummed"),
    "cache": ("data_commands", "show, prune or clear the decoded-image and feature cache"),
    "serve": ("web", "the local web workbench (runs, data, predict, train, review labels)"),
    "report": ("web", "a run's workbench page as a static HTML folder"),
}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (as classlab's own errors are), exit status 2."""

    def error(self, message):
        self.exit(2, f"classlab: error: {message} (see '{self.prog} --help')\n")


def command(name: str):
    """The ``Command`` (help, configure, run, examples) of a subcommand, importing only its module."""
    return importlib.import_module(f".{COMMANDS[name][0]}", __name__).COMMANDS[name]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; every subcommand is listed, but only ``only``'s arguments are built (all when None)."""
    from .. import __version__

    parser = Parser(prog="classlab", description="Image classification workbench: explore, check, "
                                     "split, k-NN, training, transfer learning and complete evaluation reports.",
                                     epilog="example:\n  classlab knn digits --k 1,3,5",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"classlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=summary)
            continue
        spec = command(name)
        p = sub.add_parser(name, help=summary, description=spec.help, epilog=spec.examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        spec.configure(p)
        p.set_defaults(command_function=spec.run)
    return parser


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv=None) -> int:
    share_cores_politely()  # before any command imports torch
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            args = build_parser(_chosen(argv)).parse_args(argv)
        except SystemExit as e:  # --help, --version, or a usage error (already printed on one line)
            return int(e.code or 0)
        code = args.command_function(args)
        sys.stdout.flush()
    except ClasslabError as e:
        print(f"classlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("classlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `classlab check DIR | head`: the reader has gone, which is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
