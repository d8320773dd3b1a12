"""The ``classlab`` command line: a thin layer over the Python API.

``COMMANDS`` maps each subcommand to the module that defines it (its flags and what it runs, in
``COMMANDS`` there too). Only the chosen command's module is imported, and none of them imports torch
before it runs, so ``classlab check --help`` answers at once. A ``ClasslabError`` is printed on one
line and exits with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ClasslabError

COMMANDS = {  # name -> module under classlab.cli (in the order --help lists them)
    "explore": "data_commands", "check": "data_commands", "knn": "knn", "runs": "data_commands",
    "train": "train", "transfer": "transfer", "lr-find": "train", "predict": "inference", "export": "inference",
    "models": "models", "summary": "models", "plot": "learn", "conv-size": "learn", "visualize": "inference",
    "workshop": "learn", "explain": "explain", "compare": "compare", "download": "data_commands",
    "serve": "web", "report": "web",
}
HELP = {  # one line per command for the top-level --help, without importing every module
    "explore": "sample grid, class distribution and statistics of a dataset",
    "check": "dataset doctor: corrupt files, duplicates, leakage, imbalance",
    "knn": "exact k-nearest neighbours on pixels or embeddings",
    "runs": "list runs with their headline metrics",
    "train": "train a model (any from 'classlab models')",
    "transfer": "transfer learning: pretrained backbone, cached features, fine-tuning",
    "lr-find": "learning-rate range test",
    "predict": "top-k labels for new images",
    "export": "ONNX / TorchScript bundle with class names and preprocessing",
    "models": "list the registered models",
    "summary": "Keras-style table of a model",
    "plot": "activation functions, the decks' sigmoid neuron",
    "conv-size": "output sizes of convolution and pooling",
    "visualize": "filters and feature maps of a trained CNN",
    "workshop": "the decks' whole path, compared",
    "explain": "top losses, confused pairs, Grad-CAM / occlusion, calibration",
    "compare": "is run B really better than run A, and on which images",
    "download": "download a named dataset, checksummed",
    "serve": "the local web workbench (runs, data, predict, train, review labels)",
    "report": "a run's workbench page as a static HTML folder",
}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (as classlab's own errors are), exit status 2."""

    def error(self, message):
        self.exit(2, f"classlab: error: {message} (see '{self.prog} --help')\n")


def command(name: str):
    """The ``Command`` (help, configure, run, examples) of a subcommand, importing only its module."""
    return importlib.import_module(f".{COMMANDS[name]}", __name__).COMMANDS[name]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; every subcommand is listed, but only ``only``'s arguments are built (all when None)."""
    from .. import __version__

    parser = Parser(prog="classlab", description="Image classification workbench: explore, check, "
                                     "split, k-NN, training, transfer learning and complete evaluation reports.",
                                     epilog="example:\n  classlab knn digits --k 1,3,5",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"classlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=HELP[name])
            continue
        spec = command(name)
        p = sub.add_parser(name, help=HELP[name], description=spec.help, epilog=spec.examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        spec.configure(p)
        p.set_defaults(command_function=spec.run)
    return parser


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv=None) -> int:
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
