"""Building a shipped catalog's Fashion index as a background job (the tab's "Build it now").

Why a job: encoding Fashion-MNIST's 70,000 images takes minutes of both cores; in the page's thread it froze the
tab for everyone on the server. The worker runs ``build_index`` in its own process; the index is written with
its manifest as every index build writes it, so the tab picks it up on its next render.
"""

from __future__ import annotations

import time
from typing import Any

from core.jobs.handlers import Progress, job_handler
from fashion.train import build_index

KIND, HANDLER = "fashion.index", "fashion.jobs:build_job"


@job_handler
def build_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``params`` = ``{"catalog"}``: build (or reuse a fresh) index with the default encoder settings."""
    t0 = time.time()
    index, built = build_index(str(params["catalog"]), progress=progress)
    return {"catalog": params["catalog"], "items": len(index), "built": bool(built),
            "seconds": round(time.time() - t0, 1)}
