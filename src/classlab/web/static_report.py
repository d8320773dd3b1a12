"""``classlab report RUN --html OUT``: the workbench's page of a run as a static folder (for sharing or
grading). The pages are the served ones, fetched in-process and rewritten: links to the run's files, images
and confusion cells become files in the folder; navigation and forms (which need the server) are left out."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import ClasslabError

ATTRIBUTE = re.compile(r'(href|src)="([^"]*)"')
STRIPPED = [re.compile(r"<header class=\"top\">.*?</header>", re.S), re.compile(r"<form\b.*?</form>", re.S),
            re.compile(r"<script\b[^>]*></script>"), re.compile(r'\shx-[a-z-]+="[^"]*"')]
MAX_PAGES = 500


def export_html(run_dir: str | Path, out: str | Path) -> Path:
    """Write ``out/index.html`` (and what it links to) for the run; returns the index path."""
    from starlette.testclient import TestClient

    from .app import create_app

    run_dir, out = Path(run_dir).resolve(), Path(out)
    if not (run_dir / "config.json").is_file():
        raise ClasslabError(f"{run_dir} is not a classlab run directory (no config.json)")
    if out.exists() and any(out.iterdir()):
        raise ClasslabError(f"{out} exists and is not empty; choose a new folder for the static report")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(__file__).parent / "static", out / "static", dirs_exist_ok=True)
    prefix = f"/runs/{run_dir.name}"
    with TestClient(create_app(run_dir.parent), base_url="http://127.0.0.1") as client:
        exporter = _Exporter(client, prefix, out)
        exporter.page(prefix, "index.html")
        while exporter.queue and len(exporter.done) < MAX_PAGES:
            url, target = exporter.queue.pop()
            exporter.page(url, target)
    return out / "index.html"


class _Exporter:
    def __init__(self, client, prefix: str, out: Path):
        self.client, self.prefix, self.out = client, prefix, out
        self.queue: list[tuple[str, str]] = []
        self.done: set[str] = set()

    def page(self, url: str, target: str) -> None:
        if target in self.done:
            return
        self.done.add(target)
        response = self.client.get(url)
        if response.status_code != 200:
            raise ClasslabError(f"cannot render {url} for the static report ({response.status_code})")
        html = response.text
        if not html.lstrip().lower().startswith("<!doctype"):  # a fragment (a confusion cell): give it a page
            html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{target}</title>'
                    f'<link rel="stylesheet" href="/static/style.css"></head><body><main>'
                    f'<p><a href="{self.prefix}">back to the run</a></p>{html}</main></body></html>')
        for pattern in STRIPPED:
            html = pattern.sub("", html)
        here = os.path.dirname(target)
        html = ATTRIBUTE.sub(lambda m: f'{m.group(1)}="{self.link(m.group(2), here)}"', html)
        self.write(target, html.encode("utf-8"))

    def link(self, url: str, here: str) -> str:
        """The local file a URL of the page becomes (fetched or queued), relative to the page's folder."""
        url = url.replace("&amp;", "&")
        parts = urlsplit(url)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if url.startswith(("data:", "#")) or parts.scheme:
            return url
        if path.startswith("/static/"):
            local = path.lstrip("/")
        elif path == self.prefix:
            local = "index.html"
        elif path.startswith(self.prefix + "/files/"):
            local = "files/" + path[len(self.prefix + "/files/"):]
            if not self.fetch(url, local):
                return "#"
        elif path in (self.prefix + "/image", self.prefix + "/card"):
            item = query.get("id", [""])[0]
            side = query.get("side", ["96"])[0] if path.endswith("/image") else "192"
            local = f"images/{hashlib.sha1(item.encode()).hexdigest()[:16]}-{side}.png"
            if not self.fetch(f"{self.prefix}/image?id={quote(item)}&side={side}", local):
                return "#"
        elif path == self.prefix + "/cell":
            t, p = query.get("t", ["0"])[0], query.get("p", ["0"])[0]
            local = f"cells/cell_{int(t):03d}_{int(p):03d}.html"
            self.queue.append((url, local))
        else:
            return "#"  # a page of the live workbench (other runs, predict, train)
        return os.path.relpath(local, here or ".")

    def fetch(self, url: str, local: str) -> bool:
        """Save what ``url`` answers as ``local``; False when it answers nothing (the link is dropped)."""
        if local in self.done:
            return (self.out / local).exists()
        self.done.add(local)
        response = self.client.get(url)
        if response.status_code != 200:
            return False
        self.write(local, response.content)
        return True

    def write(self, local: str, data: bytes) -> None:
        from ..fileio import atomic_write_bytes

        path = self.out / local
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
