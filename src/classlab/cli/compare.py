"""``classlab compare RUN_A RUN_B [...]``: is one run really better than another, and on which images."""

from __future__ import annotations

from .common import Command


def configure(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories; each is compared with the first")
    p.add_argument("--common", action="store_true", help="runs scored on different test images: compare them on "
                                                         "the images they share")
    p.add_argument("--no-images", action="store_true", help="leave out the grids of images (no dataset loading)")
    p.add_argument("--runs-dir", help="where the comparison goes (default: $CLASSLAB_RUNS or ./runs)")


def run(args) -> None:
    from ..commands.compare import compare_runs

    result = compare_runs(args.runs, args.runs_dir, common=args.common, images=not args.no_images)
    for pair in result.details["pairs"]:
        print(f"{pair['b']} vs {pair['a']} on {pair['images']:,} images:")
        print(f"  {pair['verdict_accuracy']}")
        print(f"  {pair['verdict_macro_f1']}")
    print(f"report: {result.report}")


COMMANDS = {"compare": Command(
    "Compare runs on the same test images: metrics with intervals, paired tests in words, per-class and "
    "per-image differences.", configure, run,
    "examples:\n  classlab compare runs/<knn run> runs/<cnn run>\n"
    "  classlab compare runs/<a> runs/<b> runs/<c>          # b and c against a\n"
    "  classlab compare runs/<a> runs/<b> --common          # runs scored on different test images")}
