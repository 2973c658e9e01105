"""Building the shipped Tux Paint product index as a background job (the Product search tab's "Build it now").

Why a job: building the catalog (pictures, words, thumbnails) and training the projection take minutes of both
cores; in the page's thread that froze the tab for everyone on the server. The worker builds the shipped catalog
the ordinary way (``core.catalog``) and the tab's head on top of it in its own process; the index is written with
its manifest as every index build writes it, so the tab picks it up on its next render.
"""

from __future__ import annotations

import time
from typing import Any

from core.jobs.handlers import JobFailed, Progress, job_handler

KIND, HANDLER = "multimodal.index", "multimodal.jobs:build_job"
#: The catalog this job builds: the one that ships with the app (people's own catalogs are built on the Data tab).
SHIPPED = "tuxpaint"


@job_handler
def build_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``params`` = ``{"catalog": "tuxpaint"}``: build (or reuse a fresh) index with the default settings."""
    # the job process starts with the standard library only; the model stack loads when it runs
    from multimodal.train import build_catalog_head

    if params.get("catalog") != SHIPPED:
        raise JobFailed(f"Only the shipped {SHIPPED!r} index is built here; add your own catalog on the Data tab.")
    t0 = time.time()
    # the shipped catalog is built the ordinary way first (skipped when fresh), then the tab's head on top of it
    _, built, summary = build_catalog_head(SHIPPED, kind=SHIPPED, progress=progress)
    return {"catalog": SHIPPED, "items": summary.get("items", 0), "built": bool(built),
            "seconds": round(time.time() - t0, 1)}
