"""Shared test fixtures: a private models folder, the running app, and a headless Chromium page.

Tests never touch the real ``models/``: this file points ``RECS_MODELS_DIR`` at a temporary folder
*before* any project module is imported, so artifacts built by tests (tiny indexes and models) live
and die with the test session, and the app started by ``app_url`` sees the same folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_MODELS = Path(tempfile.mkdtemp(prefix="recs-test-models-"))
os.environ["RECS_MODELS_DIR"] = str(_MODELS)
# exported ONNX encoder graphs are a pure function of weights + torch version + shape: share them across runs
os.environ.setdefault("RECS_ENCODER_CACHE", str(ROOT / "models" / "encoders"))
os.environ.setdefault("RECS_NO_TQDM", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = ROOT.parent / "shared" / "data"
ARTIFACTS = ROOT / "test-artifacts"
FIXTURES = ROOT / "tests" / "fixtures"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is also slow (it starts the app and Chromium), marked or not: ``-m "not slow"`` skips it."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow(reason="drives the app in a browser"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The session's private models folder (also ``core.artifacts.MODELS_DIR``)."""
    return _MODELS


@pytest.fixture(scope="session")
def lastfm_dir() -> Path:
    """Real Last.fm HetRec-2K from ../shared/data; skips when this checkout has no shared/ beside it."""
    path = SHARED_DATA / "lastfm-2k"
    if not (path / "user_artists.dat").is_file():
        pytest.skip(f"Last.fm-2K not present at {path} (tests may read ../shared/data when it exists)")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where browser tests save screenshots for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """Start ``app.py`` with Streamlit on a free loopback port; yield its URL; stop it by its own PID."""
    port = _free_port()
    env = dict(os.environ, RECS_MODELS_DIR=str(_MODELS), PYTHONPATH=str(ROOT),
               RECS_DATABASE_URL=f"sqlite:///{_MODELS / 'feedback.sqlite3'}")  # never the real feedback database
    log = open(tempfile.mktemp(prefix="streamlit-", suffix=".log"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early; see {log.name}")
    else:
        proc.kill()
        raise RuntimeError(f"streamlit did not become healthy in 90 s; see {log.name}")
    yield url
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="session")
def _browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is missing in CI: `make test` should have installed it")
        pytest.skip("Debian chromium not installed (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture()
def browser_page(_browser, app_url):
    """A fresh page with the app loaded and its tabs rendered."""
    context = _browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(app_url)
    page.get_by_role("tab").first.wait_for()
    yield page
    context.close()


def wait_images_loaded(page, minimum: int = 1, timeout_ms: int = 120_000) -> None:
    """Wait until at least ``minimum`` ``stImage`` pictures have decoded (before taking a screenshot)."""
    page.wait_for_function(
        """(n) => Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
                 .filter(i => i.complete && i.naturalWidth > 0).length >= n""",
        arg=minimum,
        timeout=timeout_ms,
    )


@pytest.fixture()
def wait_images():
    """The ``wait_images_loaded(page, minimum)`` helper, as a fixture."""
    return wait_images_loaded
