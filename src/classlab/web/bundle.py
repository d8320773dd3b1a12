"""Export a run's model from its page and download the bundle as a .zip: Teachable Machine's last step, here
classlab's ``export`` (ONNX or TorchScript, class names, the preprocessing contract, checked against PyTorch
before it is kept). The bundle is written to RUN/export-FORMAT as the command line does, then zipped."""

from __future__ import annotations

import asyncio
import io
import threading
import zipfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ClasslabError

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


def routes(bench) -> list[Route]:
    async def export(request: Request):
        from ..trained.export import FORMATS  # torch: only once a model is to be exported

        run_dir = bench.run(request.path_params["run"])
        fmt = str((await request.form()).get("format", "onnx"))
        if fmt not in FORMATS:
            raise ClasslabError(f"the export format is one of {', '.join(FORMATS)}")
        data = await asyncio.to_thread(bundle_zip, run_dir, fmt)
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{run_dir.name}-{fmt}.zip"'})

    return [Route("/runs/{run}/export", export, methods=["POST"])]
