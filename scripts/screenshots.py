"""Screenshots of each tab for the README, taken from the running app on the built default models.

    python scripts/screenshots.py                 # needs `make models` first; writes docs/images/<tab>.png
    python scripts/screenshots.py --out /tmp/shots

It starts ``app.py`` on a free loopback port against ``models/`` with a throw-away feedback database (nobody's
profile or likes end up in a picture), drives each tab the way a first-time visitor would (a photo of a cat
for Hashtags, the first listener's picks, a garment photo for Fashion, the word "sun" for Product search), and
saves one viewport-sized PNG per tab, palette-quantized so the README stays light. Headless Debian Chromium
through Playwright, the same pair the browser tests use.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.app_load import start_app, stop_app  # noqa: E402 - the benchmark's way to run the app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 1600}
SHOT_HEIGHT = 1150
log = logging.getLogger("screenshots")


@contextmanager
def running_app(scratch: Path) -> Iterator[str]:
    """The app on a free port, on the real models and a scratch database; stopped on exit."""
    env = dict(os.environ, KERAS_BACKEND="torch", HF_HUB_OFFLINE="1",
               RECS_DATABASE_URL=f"sqlite:///{scratch / 'feedback.sqlite3'}")
    proc, url = start_app(ROOT, env, scratch / "streamlit.log")
    try:
        yield url
    finally:
        stop_app(proc)


def _images_loaded(page, minimum: int) -> None:
    page.wait_for_function(
        "n => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= n", arg=minimum, timeout=180_000)


def _open(page, tab: str):
    page.get_by_role("tab", name=tab).click()
    return page.get_by_role("tabpanel", name=tab)


def hashtags(page, photos: Path):
    panel = _open(page, "Hashtags")
    panel.locator('input[type="file"]').first.set_input_files(str(photos / "cat.png"))
    panel.locator('[data-testid="stCode"]').first.wait_for()
    _images_loaded(page, 2)
    return panel.get_by_text("Photo (jpg", exact=False).first


def music(page, photos: Path):
    panel = _open(page, "Music")
    panel.get_by_text("Top 10 picks for").first.wait_for()
    return None


def fashion(page, photos: Path):
    panel = _open(page, "Fashion")
    panel.locator('input[type="file"]').first.set_input_files(str(photos / "garment.png"))
    page.wait_for_function("() => (document.body.innerText.match(/similarity \\d/g) || []).length >= 5",
                           timeout=180_000)
    _images_loaded(page, 5)
    return panel.get_by_text("Catalog", exact=True).first


def product_search(page, photos: Path):
    panel = _open(page, "Product search")
    box = panel.get_by_label("Search words")
    box.fill("sun")
    box.press("Enter")
    panel.get_by_role("button", name="More like this").nth(3).wait_for(timeout=180_000)
    _images_loaded(page, 4)
    return None


def data(page, photos: Path):
    panel = _open(page, "Data")
    panel.get_by_text("catalog", exact=False).first.wait_for()
    return None


SHOTS = {"hashtags": hashtags, "music": music, "fashion": fashion, "product-search": product_search,
         "data": data}


def query_photos(folder: Path) -> Path:
    """A cat photo (scikit-image's Chelsea) and a garment (blue jeans from the Tux Paint clothes catalog)."""
    # the query photos' packages load when the pictures are taken, not for --help
    from skimage import data as skdata

    Image.fromarray(skdata.chelsea()).save(folder / "cat.png")
    # the project's modules bring the model stack: loaded when pictures are taken, not for --help
    from fashion.service import catalog

    catalog("tuxpaint-clothes").image(4).save(folder / "garment.png")  # blue jeans
    return folder


def _panel_shot(page, start) -> bytes:
    """The open tab from ``start`` (or its tab bar) down, at most ``SHOT_HEIGHT`` px: the part a reader needs."""
    page.evaluate("window.scrollTo(0, 0)")
    box = (start or page.get_by_role("tablist").first).bounding_box()
    panel = page.locator('[role="tabpanel"]:visible').first.bounding_box()
    top = box["y"]
    clip = {"x": panel["x"] - 16, "y": top - 8, "width": panel["width"] + 32, "height": SHOT_HEIGHT}
    return page.screenshot(clip=clip, full_page=True)


def save_light(png: bytes, path: Path) -> None:
    """Palette-quantize (256 colours) so a screenshot is tens of kB, not hundreds."""

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    tmp = path.with_suffix(".tmp.png")
    image.save(tmp, optimize=True)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--only", nargs="*", choices=sorted(SHOTS), help="some tabs only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Playwright starts a browser driver: loaded when pictures are taken, not for --help
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recs-shots-") as tmp, running_app(Path(tmp)) as url, \
            sync_playwright() as pw:
        photos = query_photos(Path(tmp))
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for name in args.only or SHOTS:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(180_000)
            page.goto(url)
            page.get_by_role("tab").first.wait_for()
            start = SHOTS[name](page, photos)
            time.sleep(1.0)  # let the last element fade in
            save_light(_panel_shot(page, start), args.out / f"{name}.png")
            log.info("saved %s", args.out / f"{name}.png")
            page.context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
