"""What keeps the workbench from serving more than it should: the host and token check on every request,
the same-origin check on every state-changing one, security headers, and the one way a URL becomes a
path (a run id or a file inside a run, resolved inside the served folder, never followed out of it)."""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
RUN_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}){0,2}")
SERVED_SUFFIXES = {".png", ".csv", ".json", ".md", ".txt", ".svg"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
       "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
COOKIE = "classlab_token"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8000`` -> ``[::1]``)."""
    return header.split("]")[0] + "]" if header.startswith("[") else header.rsplit(":", 1)[0]


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware. ``token`` None: loopback only, and the Host header must name the loopback (a page on
    another site cannot reach the workbench by DNS rebinding). With a token: every request carries it
    (``?token=`` once, then a cookie, or an ``Authorization: Bearer`` header)."""

    def __init__(self, app, token: str | None = None, allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES):
        self.app, self.token, self.allowed_hosts = app, token, tuple(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal, set_cookie = self.check(request)
        if refusal is not None:
            return await refusal(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if not any(name.lower() == b"cache-control" for name, _ in headers):  # thumbnails set their own
                    headers.append((b"cache-control", b"no-store"))
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, send_with_headers)

    def check(self, request: Request) -> tuple[PlainTextResponse | None, bool]:
        host = host_name(request.headers.get("host") or "")
        set_cookie = False
        if self.token is None:
            if host not in self.allowed_hosts:
                return PlainTextResponse("classlab serve answers on the loopback address only", 403), False
        else:
            given = request.query_params.get("token") or request.cookies.get(COOKIE) or \
                request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse("a token is needed: open the URL classlab serve printed", 403), False
            set_cookie = request.query_params.get("token") is not None
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
            return PlainTextResponse("cross-site request refused (the Origin is not this workbench)", 403), False
        return None, set_cookie


def same_origin(request: Request) -> bool:
    """A state-changing request must come from a page of this server: its Origin (or, when a browser sends
    none, its Referer) names this host and port."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host")


def resolve_run(root: Path, run_id: str) -> Path:
    """The run directory ``run_id`` names, directly inside ``root``: a plain name (no separators, no dot
    first, no ``..``), not a link leading out of the folder, holding a config.json."""
    if not RUN_ID.fullmatch(run_id or "") or ".." in run_id:
        raise HTTPException(404, "no such run")
    root = root.resolve()
    path = root / run_id
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise HTTPException(404, "no such run") from None
    if real.parent != root or not real.is_dir() or not (real / "config.json").is_file():
        raise HTTPException(404, "no such run")
    return real


def resolve_run_file(run_dir: Path, rel: str) -> Path:
    """A file inside a run (``curves.png``, ``explain/cells/cell_000_001.png``): a relative name of plain
    segments with a served suffix, a regular file whose real path stays inside the run."""
    from ..safe_files import UnreadableFile, check_path

    if not RUN_FILE.fullmatch(rel or "") or ".." in rel or Path(rel).suffix.lower() not in SERVED_SUFFIXES:
        raise HTTPException(404, "no such file")
    path = run_dir / rel
    try:
        real = path.resolve(strict=True)
        check_path(real)
    except (OSError, RuntimeError, UnreadableFile):
        raise HTTPException(404, "no such file") from None
    if not real.is_relative_to(run_dir.resolve()):
        raise HTTPException(404, "no such file")
    return real
