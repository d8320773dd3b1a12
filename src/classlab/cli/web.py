"""``classlab serve`` (the local web workbench) and ``classlab report RUN --html`` (its pages as files)."""

from __future__ import annotations

from ..errors import ClasslabError
from .common import Command


def configure_serve(p) -> None:
    p.add_argument("--runs-dir", help="the runs to serve (default: $CLASSLAB_RUNS or ./runs)")
    p.add_argument("--data-dir", help="a folder of datasets to offer (image folders, .zip files, mnist/, "
                                      "fashion-mnist/), where datasets made in the workbench go too (default: "
                                      "$CLASSLAB_DATA, else ./data)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only); "
                                                      "any other address requires the printed token")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", help="the access token (default: a random one, printed in the URL, when --host "
                                   "is not the loopback)")


def serve(args) -> None:
    import os
    import socket

    from ..runs import default_runs_dir

    try:
        import uvicorn

        from ..web.app import create_app
        from ..web.guard import is_loopback, new_token
    except ImportError as e:
        raise ClasslabError(f"the workbench needs its extra: pip install 'classlab[web]' ({e.name} is missing)") from None
    if not 0 <= args.port <= 65535:
        raise ClasslabError(f"--port must be from 0 to 65535, got {args.port}")
    token = args.token or (None if is_loopback(args.host) else new_token())
    data_dir = os.path.abspath(args.data_dir or os.environ.get("CLASSLAB_DATA") or "data")
    runs_dir = args.runs_dir or default_runs_dir()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections made as soon as the URL is printed wait in the backlog, not refused
    except OSError as e:
        raise ClasslabError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); choose another --port "
                            "(0 picks a free one)") from None
    port = sock.getsockname()[1]
    app = create_app(runs_dir, data_dir=data_dir, token=token)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"classlab workbench on http://{shown}:{port}/" + (f"?token={token}" if token else ""), flush=True)
    print(f"serving runs from {os.path.abspath(runs_dir)}, datasets from {data_dir}; Ctrl+C stops it", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])


def configure_report(p) -> None:
    p.add_argument("run", help="a run directory")
    p.add_argument("--html", metavar="FOLDER", required=True,
                   help="write the run's workbench page and everything it links to into this new folder")


def report(args) -> None:
    try:
        from ..web.static_report import export_html
    except ImportError as e:
        raise ClasslabError(f"the HTML report needs the workbench extra: pip install 'classlab[web]' "
                            f"({e.name} is missing)") from None
    print(f"report: {export_html(args.run, args.html)}")


COMMANDS = {
    "serve": Command("The local web workbench over the run directories: runs, reports, confusion cells, image "
                     "cards, comparisons, the dataset doctor, predictions, training jobs, label review.",
                     configure_serve, serve,
                     "examples:\n  classlab serve\n  classlab serve --runs-dir runs --data-dir ../shared/data\n"
                     "  classlab serve --host 0.0.0.0 --port 8000     # prints a URL with an access token"),
    "report": Command("Write a run's workbench page as a static HTML folder (for sharing or grading).",
                      configure_report, report,
                      "example:\n  classlab report runs/<run> --html report-site"),
}
