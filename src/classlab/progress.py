"""Progress of long work, wherever the output goes: tqdm's bar on a terminal; in a log file or a workbench
job (stderr is not a terminal, where tqdm shows nothing) one line per phase that lasts, then a line every
``LOG_EVERY`` seconds with what is done, the rate and the time left, and one when it ends. Quick phases
stay silent, so a refusal is still the one line it should be.

The lines start with ``PREFIX``: the workbench shows the newest as the job's current phase (web/jobs.py).
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

PREFIX = "[phase] "
QUIET_FOR = 3.0  # seconds a phase runs before its first line
LOG_EVERY = 15.0  # seconds between lines after that


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
    """A progress bar with tqdm's interface (iterate, ``update``, ``set_postfix``, a context manager)."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)
    return LogBar(iterable, total, desc, unit)


class LogBar:
    """tqdm's interface, written as occasional whole lines on stderr."""

    def __init__(self, iterable=None, total: int | None = None, desc: str = "", unit: str = "it",
                 clock=time.monotonic, out=None):
        self.iterable, self.desc, self.unit, self.clock = iterable, desc, unit, clock
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.postfix, self.out = 0, "", out
        self.started = self.clock()
        self.last_line: float | None = None  # when a line was last written; None while the phase is quiet

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix(self, **values) -> None:
        # "loss 0.41", and a rate as people say it: "28 images/s"
        self.postfix = ", ".join(f"{v} {k}" if k.endswith("/s") else f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        due = QUIET_FOR if self.last_line is None else LOG_EVERY
        if now - (self.last_line if self.last_line is not None else self.started) >= due:
            self._write(self.line(now))
            self.last_line = now

    def close(self) -> None:
        if self.last_line is not None:  # only a phase that said it started says it ended
            elapsed = self.clock() - self.started
            self._write(f"{PREFIX}{self.desc}: {counted(self.n, self.unit)} in {elapsed:.0f} s"
                        + (f" ({self.postfix})" if self.postfix else ""))
            self.last_line = None

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.n / elapsed
        parts = [f"{self.n:,}/{counted(self.total, self.unit)} ({self.n / self.total:.0%})" if self.total
                 else counted(self.n, self.unit)]
        parts.append(f"{rate:,.1f} {plural(self.unit)}/s" if rate < 10 else f"{rate:,.0f} {plural(self.unit)}/s")
        if self.total and rate > 0:
            parts.append(f"about {max(self.total - self.n, 0) / rate:.0f} s left")
        if self.postfix:
            parts.append(self.postfix)
        return f"{PREFIX}{self.desc}: " + ", ".join(parts)

    def _write(self, text: str) -> None:
        out = self.out or sys.stderr
        print(text, file=out, flush=True)


def plural(noun: str) -> str:
    """'images', 'batches', 'queries' (``noun`` singular)."""
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def counted(n, noun: str) -> str:
    """'1 image', '2 images', '1,024 images', '4 batches' (``noun`` singular). Anything not a number is shown
    as it is, with the plural."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return f"{n} {plural(noun)}"
    return f"{int(n):,} {noun if int(n) == 1 else plural(noun)}"
