import http.server
import io
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One torch thread pool per core: pytest-xdist runs one worker per core, and two workers each spinning two
# OpenMP threads on two cores measured 15x slower on the transfer tests. Subprocesses inherit the setting.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    import torch

    torch.set_num_threads(_threads)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
CIFAR_ZIP = DATA / "cifar10" / "cifar10-images.zip"
MOBILENET = SHARED / "weights" / "mobilenet_v2-b0353104.pth"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the real data lives in ../shared beside the repository)")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test decodes afresh into its own cache, so no test sees another's cached pixels."""
    monkeypatch.setenv("CLASSLAB_CACHE", str(tmp_path / "decoded-cache"))
    return tmp_path / "decoded-cache"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("CLASSLAB_RUNS", str(d))
    return d


def png_bytes(array: np.ndarray, mode=None, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt, **kw)
    return buf.getvalue()


def pattern(seed: int, size=(12, 12), channels=3) -> np.ndarray:
    """A random but reproducible image (distinct per seed, so no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    shape = (*size, channels) if channels == 3 else size
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def make_class_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(12, 12), split=None, start=0) -> Path:
    for c_i, c in enumerate(classes):
        folder = root / (f"{split}/{c}" if split else c)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            seed = start + c_i * 1000 + i
            (folder / f"{i:03d}.png").write_bytes(png_bytes(pattern(seed, size)))
    return root


def imbalanced_digits_tree(root: Path, counts: dict[int, int], test_per_class: int = 40, scale: int = 1) -> Path:
    """Real digits as a folder tree: train/ with ``counts`` images per digit, test/ with ``test_per_class``
    of each, upscaled ``scale`` times."""
    from classlab import load_dataset

    ds = load_dataset("digits")
    for digit, n in counts.items():
        rows = np.flatnonzero(ds.labels == digit)
        for split, chosen in (("train", rows[:n]), ("test", rows[-test_per_class:])):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                (folder / f"{i}.png").write_bytes(png_bytes(ds.images[i, :, :, 0].repeat(scale, 0).repeat(scale, 1)))
    return root


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/served: (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A private TORCH_HOME whose hub cache holds the shared MobileNetV2 file (linked, not copied)."""
    need(MOBILENET)
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    os.symlink(MOBILENET.resolve(), home / "hub" / "checkpoints" / MOBILENET.name)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("CLASSLAB_OFFLINE", "1")  # any download attempt would fail loudly
    return home


def random_volumes_npz(path: Path) -> dict:
    """A tiny MedMNIST-3D-style .npz of random 8x12x12 volumes, two classes; returns its arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 8, 12, 12), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(path, **arrays)
    return arrays


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """A runs folder for the workbench tests: an explained CNN run and an MLP run on digits (same split),
    so every page has something to show and two runs compare; ``planted``: the ids of the CNN's wrong labels."""
    from classlab import api

    from classlab.data import load_dataset, make_split

    root = tmp_path_factory.mktemp("workbench") / "runs"
    # 12 training labels planted wrong (a corrections file applied to train and val; the test split is the
    # MLP's), so the CNN's explanation always has label issues to review
    ds = load_dataset("digits")
    planted = np.random.default_rng(0).choice(make_split(ds, 0.1, 0.1, 0).indices("train"), 12, replace=False)
    noise = root.parent / "planted-label-noise.csv"
    noise.write_text("id,action,label\n" + "".join(f"{ds.ids[i]},relabel,{(ds.labels[i] + 1) % 10}\n"
                                                   for i in planted))
    cnn = api.train("digits", "cnn", epochs=3, runs_dir=root, progress=False,
                    data_options={"corrections": str(noise)})
    api.explain(cnn)
    mlp = api.train("digits", "mlp", epochs=2, runs_dir=root, progress=False)
    return {"root": root, "cnn": cnn.run_dir.name, "mlp": mlp.run_dir.name, "planted": [ds.ids[i] for i in planted]}


def interrupted_train(args: list[str], monkeypatch, after_epoch: int) -> int:
    """``classlab <args>`` stopped right after epoch ``after_epoch``'s checkpoints, as a kill would leave it
    (a KeyboardInterrupt from the printed log's callback); returns the exit code (130: interrupted)."""
    from classlab.cli import main
    from classlab.training import engine

    def stop(self, trainer, row):
        if row["epoch"] == after_epoch:
            raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(engine.PrintLog, "after_epoch", stop)
        return main(args)
