"""``classlab explore``, ``check``, ``runs`` and ``download``: the data-side commands (none imports torch)."""

from __future__ import annotations

import json
import sys

from .common import Command, add_data_flags, data_options, positive_int


def configure_explore(p) -> None:
    add_data_flags(p)


def run_explore(args) -> None:
    from ..commands.explore import explore

    result = explore(data_options(args), args.runs_dir)
    print(result.details["text"])
    print(f"report: {result.report}")


def configure_check(p) -> None:
    add_data_flags(p, splits=False)
    p.add_argument("--min-size", type=positive_int, default=16, help="flag images smaller than this many pixels "
                                                                     "(default 16)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of text")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is found (for scripts and CI)")
    p.add_argument("--embeddings", metavar="BACKBONE", help="also an embedding pass with this pretrained backbone "
                   "(e.g. mobilenet_v2): shifted or cropped near-duplicates, outliers, neighbours with other labels")
    p.add_argument("--weights", help="weights file for --embeddings (default: the torch hub cache)")


def run_check(args) -> int:
    from ..commands.check import run_check as check

    result = check(args.data, args.data_dir, args.min_size, args.runs_dir, args.embeddings, args.weights)
    findings = result.details["findings"]
    print(json.dumps(findings, indent=2) if args.json else result.details["text"])
    print(f"report: {result.run_dir / 'check.txt'} (JSON: {result.run_dir / 'check.json'})", file=sys.stderr)
    return 1 if args.strict and (findings["errors"] or findings["warnings"]) else 0


def configure_runs(p) -> None:
    p.add_argument("--runs-dir", help="where run directories are (default: $CLASSLAB_RUNS or ./runs)")


def run_runs(args) -> None:
    from ..runs import list_runs

    rows = list_runs(args.runs_dir)
    if not rows:
        print("no runs yet; try: classlab knn digits")
        return
    print(f"{'run':60}  {'command':8}  {'accuracy':>8}  {'macro F1':>8}")
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if isinstance(r.get("accuracy"), (int, float)) else "-"
        f1 = f"{r['macro_f1']:.4f}" if isinstance(r.get("macro_f1"), (int, float)) else "-"
        print(f"{r['run']:60}  {str(r['command'] or '-'):8}  {acc:>8}  {f1:>8}")


def configure_download(p) -> None:
    p.add_argument("name", help="mnist, fashion-mnist, cifar10 or cifar100")
    p.add_argument("--data-dir", help="target folder (default: $CLASSLAB_DATA or ~/.cache/classlab/datasets)")
    p.add_argument("--mirror", help="base URL of a mirror holding the same files")


def run_download(args) -> None:
    from ..data import download

    folder = download(args.name, args.data_dir, args.mirror)
    print(f"{args.name}: files verified in {folder}")


COMMANDS = {
    "explore": Command("Sample grid, class distribution and statistics of a dataset.", configure_explore, run_explore,
                       "examples:\n  classlab explore digits\n  classlab explore ../shared/data/cifar10/cifar10-images.zip\n"
                       "  classlab explore mnist --data-dir ../shared/data"),
    "check": Command("Dataset doctor: corrupt files, wrong extensions, duplicates, leakage, imbalance.", configure_check,
                     run_check, "examples:\n  classlab check path/to/images\n  classlab check photos.zip --json"),
    "runs": Command("List runs with their headline metrics.", configure_runs, run_runs,
                    "example:\n  classlab runs --runs-dir runs"),
    "download": Command("Download a named dataset's official files, checksummed.", configure_download, run_download,
                        "examples:\n  classlab download mnist\n  classlab download cifar10 --data-dir ~/datasets"),
}
