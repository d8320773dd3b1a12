"""What a user keeps about runs besides their results: a name and a note (``workbench.json`` in the run
folder, written atomically; the folder keeps its id, which evaluations and comparisons refer to), and a
trash (``RUNS/.trash``): deleting a run moves it there, where the Trash page restores it. Nothing is
deleted outright."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from ..errors import ClasslabError
from ..fileio import write_json
from ..safe_files import read_json
from .guard import RUN_ID

NOTES = "workbench.json"
TRASH = ".trash"
MAX_NAME, MAX_NOTE = 120, 4000
_LOCK = threading.Lock()  # two tabs moving the same run


def read_notes(run_dir: Path) -> dict:
    """{"name": str, "note": str}: empty strings where none were given (or the file is not ours)."""
    data = read_json(run_dir / NOTES, 1 << 20)
    data = data if isinstance(data, dict) else {}
    return {k: data[k] if isinstance(data.get(k), str) else "" for k in ("name", "note")}


def write_notes(run_dir: Path, name: str, note: str) -> dict:
    """Keep a run's name and note (control characters dropped, lengths bounded, in words when refused)."""
    name = " ".join(str(name).split())
    note = "".join(c for c in str(note).replace("\r\n", "\n") if c == "\n" or c.isprintable())
    if len(name) > MAX_NAME or len(note) > MAX_NOTE:
        raise ClasslabError(f"a run's name holds at most {MAX_NAME} characters and its note {MAX_NOTE}")
    write_json(run_dir / NOTES, {"name": name, "note": note})
    return {"name": name, "note": note}


def trash_dir(runs_dir: Path) -> Path:
    return runs_dir / TRASH


def move_to_trash(runs_dir: Path, run_dir: Path, busy: set[str]) -> Path:
    """Move a run into the trash (a rename within the runs folder: atomic, nothing copied). ``busy``: ids of
    runs a job is writing, which stay."""
    if run_dir.name in busy:
        raise ClasslabError(f"{run_dir.name} is being written by a running job; cancel the job first")
    with _LOCK:
        target = trash_dir(runs_dir) / run_dir.name
        target.parent.mkdir(exist_ok=True)
        n = 1
        while target.exists():  # an id trashed before (restored, trashed again): the older copy stays beside it
            n += 1
            target = target.with_name(f"{run_dir.name}~{n}")
        try:
            os.rename(run_dir, target)
        except OSError as e:
            raise ClasslabError(f"could not move {run_dir.name} to the trash ({e.strerror})") from None
    return target


def trashed(runs_dir: Path) -> list[dict]:
    """The runs in the trash, newest first: id, name and when it was created (from its config.json)."""
    folder = trash_dir(runs_dir)
    if not folder.is_dir():
        return []
    rows = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if entry.is_dir() and not entry.is_symlink():
            config = read_json(entry / "config.json", 4 << 20)
            config = config if isinstance(config, dict) else {}
            rows.append({"id": entry.name, "name": read_notes(entry)["name"],
                         "command": str(config.get("command") or ""), "data": str(config.get("data") or "")})
    return rows


def restore(runs_dir: Path, trashed_id: str) -> Path:
    """Move a trashed run back under its own id (refused, in words, when a run of that id is there now)."""
    original, _, copy = (trashed_id or "").partition("~")
    if not RUN_ID.fullmatch(original) or ".." in original or not re.fullmatch(r"(\d{1,6})?", copy):
        raise ClasslabError("no such run in the trash")
    source = trash_dir(runs_dir) / trashed_id
    if not source.is_dir() or source.is_symlink():
        raise ClasslabError("no such run in the trash")
    with _LOCK:
        target = runs_dir / original
        if target.exists():
            raise ClasslabError(f"a run named {original} is in the runs folder; it stays, and so does the trashed one")
        os.rename(source, target)
    return target
