"""Reviewing suspected label issues of a run (``explain/label_issues.csv``): keep, relabel or drop each,
saved to ``corrections.csv`` in the run's directory (never touching the user's images), and the command line
that trains the run again with them."""

from __future__ import annotations

import threading
from pathlib import Path

from ..data.corrections import ACTIONS, Correction, read_corrections, write_corrections
from ..errors import ClasslabError
from ..safe_files import read_json
from .catalog import read_csv_rows

_LOCK = threading.Lock()  # one writer of corrections.csv at a time (two browser tabs)
DATA_FLAGS = {"data_dir": "--data-dir", "image_size": "--image-size", "channels": "--channels",
              "val_fraction": "--val-fraction", "test_fraction": "--test-fraction", "seed": "--seed",
              "max_train": "--max-train", "max_eval": "--max-eval", "dedupe": "--dedupe"}


class Review:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / "corrections.csv"
        self.issues = [r for r in read_csv_rows(run_dir / "explain" / "label_issues.csv") if r.get("id")]
        self.decided = {c.id: c for c in read_corrections(self.path)} if self.path.is_file() else {}
        explained = read_json(run_dir / "explain" / "explain.json") or {}
        # how explain looked for label issues (searched, flagged, space), or None before the run is explained
        findings = explained.get("label_issues") if isinstance(explained, dict) else None
        self.findings = findings if isinstance(findings, dict) else None
        metrics = read_json(run_dir / "metrics.json") or {}
        self.class_names = [str(c) for c in metrics.get("class_names", [])] if isinstance(metrics, dict) else []

    @property
    def counts(self) -> dict:
        return {a: sum(c.action == a for c in self.decided.values()) for a in ACTIONS}

    @property
    def remaining(self) -> int:
        return sum(r["id"] not in self.decided for r in self.issues)

    def next_item(self) -> dict | None:
        return next((r for r in self.issues if r["id"] not in self.decided), None)

    def decide(self, item: str, action: str, label: str = "") -> Correction:
        """A decision on an image of the label-issue queue (a relabel defaults to the suggested label)."""
        known = {r["id"]: r for r in self.issues}
        if item not in known:
            raise ClasslabError("that image is not in this run's label-issue queue")
        label = label or (known[item].get("suggested_label", "") if action == "relabel" else "")
        return self.decide_image(item, known[item].get("given_label", ""), action, label)

    def decision(self, item: str) -> Correction | None:
        return self.decided.get(item)

    def decide_image(self, item: str, given_label: str, action: str, label: str = "") -> Correction:
        """A decision on any image of the run's data (an image card's buttons); ``given_label`` is the label
        the data gives it, looked up by the caller, never taken from a form."""
        if action not in ACTIONS:
            raise ClasslabError(f"action must be one of {', '.join(ACTIONS)}")
        if action == "relabel":
            if label not in self.class_names:
                raise ClasslabError(f"'{label[:40]}' is not one of this run's classes")
            if label == given_label:
                action, label = "keep", ""
        correction = Correction(item, action, label if action == "relabel" else "")
        with _LOCK:
            current = {c.id: c for c in read_corrections(self.path)} if self.path.is_file() else {}
            current[item] = correction
            write_corrections(self.path, list(current.values()))
            self.decided = current
        return correction

    def retrain_args(self, config_dir: Path) -> list[str]:
        """``train`` with the run's own data options and training configuration, plus ``--corrections``."""
        import json

        if not self.path.is_file():
            raise ClasslabError("no corrections yet: review some label issues first")
        config = read_json(self.run_dir / "config.json", 4 << 20) or {}
        options = config.get("options") if isinstance(config.get("options"), dict) else {}
        data, train = options.get("data"), options.get("train")
        if config.get("command") != "train" or not isinstance(data, dict) or not isinstance(train, dict):
            raise ClasslabError("retraining from the workbench works for train runs; for this run, pass "
                                f"--corrections {self.path} to the command that made it")
        args = ["train", str(data.get("data") or "digits")]
        for key, flag in DATA_FLAGS.items():
            if data.get(key) not in (None, ""):
                args += [flag, str(data[key])]
        config_file = config_dir / f"retrain-{self.run_dir.name}.json"
        config_file.write_text(json.dumps(train), encoding="utf-8")
        return args + ["--config", str(config_file), "--corrections", str(self.path)]
