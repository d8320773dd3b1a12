"""User-facing errors.

A ``ClasslabError`` is a problem with the user's input (a missing file, an unknown name, an
absurd setting). The CLI prints its message on one line and exits with status 2; it never shows
a traceback. Anything else that escapes is a bug in classlab.
"""

from contextlib import contextmanager


class ClasslabError(Exception):
    """An error the user can fix; the message says how."""


class ClasslabValueError(ClasslabError, ValueError):
    """Bad values given to an estimator: a ClasslabError for the CLI, a ValueError for scikit-learn's tools
    (``check_estimator``, pipelines and grid searches catch ValueError)."""


_QUIET = []


@contextmanager
def warnings_silenced():
    """No warnings inside: e.g. cross-validation's fold runs, which would repeat what the run already said."""
    _QUIET.append(True)
    try:
        yield
    finally:
        _QUIET.pop()


def warn(message: str) -> None:
    """Print a one-line warning to stderr (skipped files, chosen defaults)."""
    import sys

    if _QUIET:
        return
    text = f"classlab: warning: {message}"
    try:
        print(text, file=sys.stderr, flush=True)
    except UnicodeEncodeError:  # a file name that is not valid UTF-8
        print(text.encode("utf-8", "backslashreplace").decode("ascii", "replace"), file=sys.stderr, flush=True)
