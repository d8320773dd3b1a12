"""The package as users install it: a wheel that carries the workbench's templates and vendored htmx, with
the license metadata current setuptools expects, and ``classlab --version``."""

import subprocess
import sys
import zipfile

import pytest

from classlab import __version__


@pytest.mark.slow
def test_wheel_carries_the_workbench_assets(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "License classifiers are deprecated" not in build.stderr and "project.license` as a TOML table" not in build.stderr
    wheel = next(tmp_path.glob("classlab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("classlab/web/static/htmx.min.js", "classlab/web/static/workbench.js", "classlab/web/static/style.css",
                   "classlab/web/templates/base.html", "classlab/web/templates/run.html"):
        assert needed in names, needed
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text


def test_version(capsys):
    from classlab.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"classlab {__version__}"
