"""Export a run's model from its page and download the bundle as a .zip: Teachable Machine's last step, here
classlab's ``export`` (ONNX or TorchScript, class names, the preprocessing contract, checked against PyTorch
before it is kept). The bundle is written to RUN/export-FORMAT as the command line does, then zipped."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

_LOCK = threading.Lock()  # two exports of one run would write the same bundle folder


def bundle_zip(run_dir: Path, fmt: str) -> bytes:
    """The run's model exported in ``fmt`` (its bundle folder renewed), as the bytes of a .zip whose files
    sit in one folder named after the run."""
    from ..trained.export import export_run

    with _LOCK:
        bundle = export_run(run_dir, fmt)["bundle"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(bundle.iterdir()):
                if path.is_file() and not path.is_symlink():
                    archive.write(path, f"{run_dir.name}-{fmt}/{path.name}")
    return buffer.getvalue()
