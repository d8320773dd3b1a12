"""The runs folder as the workbench sees it: one summary per run (cached, keyed on file mtimes, so the runs
page stays fast with hundreds of runs) and the details of one run, read from its files. No database: the
run directories are the state."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..runs import number
from ..safe_files import read_csv, read_json
from .manage import NOTES, read_notes

SORT_KEYS = ("created", "name", "command", "data", "model", "size", "epochs", "lr", "accuracy", "macro_f1")
SEARCHED = ("id", "name", "note", "data", "model", "command", "size")


def read_csv_rows(path: Path, limit: int = 64 << 20) -> list[dict]:
    """The rows of a run's CSV file, or none when it is missing or unreadable (a page shows what there is)."""
    try:
        return read_csv(path, limit, errors="replace")
    except (OSError, ValueError):  # UnreadableFile is a ValueError
        return []


def _model_name(config: dict) -> str:
    options = config.get("options") if isinstance(config.get("options"), dict) else {}
    for key in ("train", "transfer"):
        part = options.get(key)
        if isinstance(part, dict):
            return str(part.get("model") or part.get("backbone") or "")
    if config.get("command") == "knn":
        return "k-NN"
    return ""


def settings(config: dict) -> dict:
    """The settings people filter runs on: image size ("224x224", what the model takes), epochs (fine-tuning's
    for a transfer run that fine-tunes, else the head's or training's) and learning rate."""
    options = config.get("options") if isinstance(config.get("options"), dict) else {}
    part = next((options[k] for k in ("train", "transfer") if isinstance(options.get(k), dict)), {})
    model = options.get("model") if isinstance(options.get("model"), dict) else {}
    pre = options.get("preprocessing") if isinstance(options.get("preprocessing"), dict) else {}
    size = pre.get("input_size") or pre.get("image_size") or model.get("image_size")
    epochs = part.get("epochs")
    if "finetune_epochs" in part:
        epochs = part.get("finetune_epochs") if part.get("mode") in ("both", "finetune") else part.get("head_epochs")
    return {"size": "x".join(str(v) for v in size) if isinstance(size, list) and size else "",
            "epochs": number(epochs), "lr": number(part.get("lr"))}


def _evaluated_run(config: dict) -> tuple[str, str]:
    """(id, model name) of the run an evaluation scored, or ("", "") for any other run."""
    source = (config.get("options") or {}).get("run") if isinstance(config.get("options"), dict) else None
    if config.get("command") != "evaluate" or not isinstance(source, str):
        return "", ""
    source_config = read_json(Path(source) / "config.json", 4 << 20)
    return Path(source).name, _model_name(source_config) if isinstance(source_config, dict) else ""


def summarise(run_dir: Path) -> dict | None:
    """The runs page's row for one run directory (None when it is not a readable run)."""
    config = read_json(run_dir / "config.json", 4 << 20)
    if not isinstance(config, dict):
        return None
    metrics = read_json(run_dir / "metrics.json")
    metrics = metrics if isinstance(metrics, dict) else {}
    macro = metrics.get("macro_avg") if isinstance(metrics.get("macro_avg"), dict) else {}
    evaluates, evaluated_model = _evaluated_run(config)
    return {"id": run_dir.name, **read_notes(run_dir), **settings(config), "command": str(config.get("command") or ""), "data": str(config.get("data") or ""),
            "created": str(config.get("created") or ""), "model": evaluated_model or _model_name(config),
            "evaluates": evaluates,
            "accuracy": number(metrics.get("accuracy")), "macro_f1": number(macro.get("f1")),
            "test_images": number(metrics.get("n")),
            "has_model": (run_dir / "best.pt").is_file(),
            "predicts": (run_dir / "best.pt").is_file() or (run_dir / "scratch.npz").is_file()
            or (config.get("command") == "knn" and (run_dir / "split.csv").is_file()),
            "explained": (run_dir / "explain" / "explain.json").is_file(),
            "finished": bool(metrics) or (run_dir / "report.md").is_file()}


class RunCatalog:
    """Every run directory directly under ``root``, summarised once and re-read only when its directory,
    config.json or metrics.json changes (a stat each, no reads)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple, dict | None]] = {}
        self._lock = threading.Lock()

    def _key(self, path: str) -> tuple | None:
        try:
            own = os.stat(path)
        except OSError:
            return None
        stamps = [own.st_mtime_ns]
        for name in ("config.json", "metrics.json", NOTES):
            try:
                stamps.append(os.stat(os.path.join(path, name)).st_mtime_ns)
            except OSError:
                stamps.append(0)
        return tuple(stamps)

    def summaries(self) -> list[dict]:
        try:
            entries = [e for e in os.scandir(self.root) if not e.name.startswith(".") and e.is_dir()]
        except OSError:
            return []
        rows, seen = [], set()
        with self._lock:
            for entry in entries:
                key = self._key(entry.path)
                if key is None or key[1] == 0:
                    continue
                seen.add(entry.name)
                cached = self._cache.get(entry.name)
                if cached is None or cached[0] != key:
                    cached = (key, summarise(Path(entry.path)))
                    self._cache[entry.name] = cached
                if cached[1] is not None:
                    rows.append(cached[1])
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        return rows

    def query(self, text: str = "", command: str = "", sort: str = "created", descending: bool = True,
              rows: list[dict] | None = None) -> list[dict]:
        """Runs whose id, data or model contain ``text`` (case-insensitive), of ``command`` when given, sorted
        by ``sort`` (missing values last); of ``rows`` when given (summaries a page has already read)."""
        text = text.strip().lower()
        rows = [r for r in (self.summaries() if rows is None else rows)
                if (not command or r["command"] == command)
                and (not text or any(text in str(r[k]).lower() for k in SEARCHED))]
        sort = sort if sort in SORT_KEYS else "created"
        present = [r for r in rows if r[sort] not in (None, "")]
        missing = [r for r in rows if r[sort] in (None, "")]
        present.sort(key=lambda r: (r[sort], r["id"]), reverse=descending)
        return present + sorted(missing, key=lambda r: r["id"], reverse=True)

    def commands(self, rows: list[dict] | None = None) -> list[str]:
        return sorted({r["command"] for r in (self.summaries() if rows is None else rows) if r["command"]})


def run_details(run_dir: Path) -> dict:
    """Everything the run page shows, read from the run's files (numbers only; images are linked)."""
    config = read_json(run_dir / "config.json", 4 << 20) or {}
    metrics = read_json(run_dir / "metrics.json") or {}
    explain = read_json(run_dir / "explain" / "explain.json") or {}
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    return {"id": run_dir.name, "config": config, "metrics": metrics if isinstance(metrics, dict) else {},
            "explain": explain if isinstance(explain, dict) else {}, "pngs": pngs,
            "confusion": confusion_table(metrics) if isinstance(metrics, dict) else None,
            "label_issues": read_csv_rows(run_dir / "explain" / "label_issues.csv")[:200],
            "comparison": read_json(run_dir / "comparison.json"), "check": read_json(run_dir / "check.json"),
            "has_model": (run_dir / "best.pt").is_file(), "has_outputs": (run_dir / "probabilities.npz").is_file(),
            "corrections": (run_dir / "corrections.csv").is_file(),
            "files": sorted(p.name for p in run_dir.iterdir()
                            if p.is_file() and not p.is_symlink() and not p.name.startswith("."))}


def confusion_table(metrics: dict) -> dict | None:
    """Rows of (count, share of the row) for an HTML confusion matrix, or None when the run has none."""
    cm, names = metrics.get("confusion_matrix"), metrics.get("class_names")
    if not isinstance(cm, list) or not isinstance(names, list) or len(cm) != len(names) or len(names) > 100:
        return None
    rows = []
    for t, row in enumerate(cm):
        total = sum(row) or 1
        rows.append([{"true": t, "pred": p, "count": int(c), "share": c / total} for p, c in enumerate(row)])
    return {"names": [str(n) for n in names], "rows": rows}
