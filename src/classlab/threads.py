"""How torch's OpenMP threads wait, set before torch is imported.

libgomp's threads spin for a while (300,000 turns) before they sleep at every parallel region's end. On
an idle machine that shaves latency; on a laptop or a shared 2-core machine running another job, the
spinning threads steal the very cores the work needs: frozen MobileNetV2 features of 398 photos took
4.3 s idle and 20.4 s beside a 2-thread job (4.7x). With 1,000 turns they took 8.8 s (2x, the fair
share), and small-image training kept about 70% of its idle speed (fully passive waiting halved it).
A value the user set stays (benchmarks/README.md).
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "1000"


def share_cores_politely() -> None:
    """Shorten OpenMP's spin-wait, unless torch is already imported (too late) or the user chose one."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
