"""``classlab explore``, ``check``, ``runs``, ``download`` and ``cache``: the data-side commands (none imports
torch)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ClasslabError
from .common import Command, add_data_flags, data_options, finite_float, positive_int


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


def size_arg(text: str) -> int:
    from ..data.cache import parse_size

    try:
        return parse_size(text)
    except ClasslabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def days_arg(text: str) -> float:
    days = finite_float(text)
    if days < 0:
        raise argparse.ArgumentTypeError(f"expected a number of days of 0 or more, got '{text}'")
    return days


def configure_cache(p) -> None:
    p.add_argument("action", nargs="?", choices=("info", "prune", "clear"), default="info",
                   help="info (default): where the cache is and what it holds; prune: evict the least recently "
                        "used entries; clear: remove every entry")
    p.add_argument("--max-size", type=size_arg, metavar="SIZE", help="prune: keep at most this much, like 5G "
                   "(default: $CLASSLAB_CACHE_MAX_SIZE, else 20G)")
    p.add_argument("--older-than", type=days_arg, metavar="DAYS", help="prune: also remove entries unused for "
                   "this many days")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def run_cache(args) -> None:
    from ..data import cache

    folder = cache.cache_dir()
    if folder is None:
        print("the cache is off (CLASSLAB_CACHE=off); nothing to show or remove")
        return
    before = cache.entries(folder)
    removed = freed = 0
    if args.action == "clear":
        removed, freed = cache.prune(max_bytes=0, older_than=0, folder=folder)
    elif args.action == "prune":
        cap = args.max_size if args.max_size is not None else cache.max_size()
        older = args.older_than * 86400 if args.older_than is not None else None
        removed, freed = cache.prune(max_bytes=cap, older_than=older, folder=folder)
    left = cache.entries(folder) if removed else before
    kinds = {kind: {"entries": sum(e.kind == kind for e in left), "bytes": sum(e.size for e in left if e.kind == kind)}
             for kind in ("decoded", "features", "partial")}
    summary = {"folder": str(folder), "max_size": cache.max_size(), "removed": removed, "freed_bytes": freed,
               "kinds": kinds, "total_bytes": sum(e.size for e in left)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    cap = "no cap" if summary["max_size"] is None else f"cap {_human(summary['max_size'])}"
    print(f"cache: {folder} ({_human(summary['total_bytes'])}, {cap}; ${cache.MAX_SIZE_ENV} sets it)")
    for kind, label in (("decoded", "decoded image trees"), ("features", "backbone features"),
                        ("partial", "interrupted writes")):
        print(f"  {label:20} {kinds[kind]['entries']:6d} entries  {_human(kinds[kind]['bytes']):>10}")
    if args.action != "info":
        print(f"removed {removed} entries, {_human(freed)} freed")
    if folder.exists() and not folder.is_dir():
        print(f"note: {folder} is not a folder, so nothing can be cached; point CLASSLAB_CACHE at a folder")


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
    "cache": Command("Show, prune or clear the cache of decoded images and backbone features. It keeps itself under "
                     "$CLASSLAB_CACHE_MAX_SIZE (default 20G) by evicting the least recently used entries; every "
                     "entry is rebuilt on demand.", configure_cache, run_cache,
                     "examples:\n  classlab cache\n  classlab cache prune --max-size 5G --older-than 30\n"
                     "  classlab cache clear"),
}
