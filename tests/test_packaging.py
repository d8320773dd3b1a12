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


@pytest.mark.slow
def test_the_wheel_installs_and_serves_from_a_fresh_venv(tmp_path):
    """pip install of the built wheel into a new venv (its dependencies seen through a path file, so no
    download): the installed package, not the checkout, answers --version and serves its pages."""
    import site
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), "-q"], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("classlab-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    packages = next(venv.glob("lib/python*/site-packages"))
    # the dependencies of this environment, as a plain path (its editable classlab is not activated this way)
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    version = subprocess.run([str(venv / "bin" / "classlab"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"classlab {__version__}"
    code = ("import classlab, classlab.web.app as w\n"
            "from starlette.testclient import TestClient\n"
            "print(classlab.__file__)\n"
            "c = TestClient(w.create_app('runs'), base_url='http://127.0.0.1')\n"
            "print(c.get('/').status_code, c.get('/static/htmx.min.js').status_code)\n")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    location, statuses = out.stdout.strip().splitlines()
    assert location.startswith(str(packages)) and statuses == "200 200"
