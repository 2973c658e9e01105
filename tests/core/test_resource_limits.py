"""What one visitor can cost the server: where it listens, what it installs, what a session keeps, how much at once."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _other_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (what another machine would connect to)."""
    psutil = pytest.importorskip("psutil")
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def test_plain_streamlit_run_with_the_repo_config_listens_on_loopback_only(tmp_path):
    psutil = pytest.importorskip("psutil")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), RECS_MODELS_DIR=str(tmp_path),
               RECS_DATABASE_URL=f"sqlite:///{tmp_path / 'feedback.sqlite3'}")
    log = open(tmp_path / "streamlit.log", "w")
    # No --server.address: only .streamlit/config.toml decides where it listens.
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "streamlit.log").read_text()[-2000:]
        else:
            pytest.fail("streamlit did not become healthy in 90 s")
        bound = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert bound == {"127.0.0.1"}, bound
        for address in _other_addresses():
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((address, port))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.parametrize("address,login,warned", [
    ("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False),
    ("0.0.0.0", False, True), ("", False, True), ("192.0.2.7", False, True), ("0.0.0.0", True, False),
])
def test_serving_beyond_loopback_without_a_login_warns_once_in_one_line(monkeypatch, caplog, address, login, warned):
    import streamlit as st

    import ui.common as common

    monkeypatch.setattr(st, "get_option", lambda name: address if name == "server.address" else None)
    monkeypatch.setattr(common, "login_configured", lambda: login)
    with caplog.at_level(logging.WARNING, logger="ui.common"):
        message = common.warn_if_exposed()
    lines = [r.getMessage() for r in caplog.records if r.name == "ui.common"]
    assert (message is not None) == warned
    assert lines == ([message] if warned else [])
    assert all("\n" not in line for line in lines)


def test_app_calls_the_warning_once_per_process():
    source = (ROOT / "app.py").read_text()
    setup = source[source.index("def _process_setup"):source.index("PROFILE_DIR =")]
    assert "warn_if_exposed()" in setup and "@st.cache_resource" in source[:source.index("def _process_setup")]


def _fashion_tab() -> None:
    from ui.fashion import render

    render()


def test_fashion_tab_with_its_dataset_missing_never_runs_apt_get(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    import core.datasets
    import fashion.data

    calls: list = []
    real_popen = subprocess.Popen

    class Recording(real_popen):  # every subprocess.run / check_output goes through Popen
        def __init__(self, args, *rest, **kwargs):
            argv = [str(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
            if any(Path(a).name in ("apt-get", "apt", "dpkg", "sudo") for a in argv):
                calls.append(argv)
                raise AssertionError(f"the app ran {argv}")
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(fashion.data, "FASHION_MNIST_DIR", tmp_path / "no-fashion-mnist")
    monkeypatch.setattr(core.datasets, "apt_usable", lambda: True)  # as when the server runs as root
    monkeypatch.setattr(subprocess, "Popen", Recording)
    from ui import fashion as fashion_tab

    fashion_tab._catalog.clear()  # another test of this process may have loaded the real catalog already
    at = AppTest.from_function(_fashion_tab, default_timeout=120)
    for _ in range(2):  # and again on a rerun
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    assert calls == []
    errors = re.sub(r"\\(.)", r"\1", " ".join(e.value for e in at.error))  # as shown: escapes dropped
    assert "make setup" in errors and "apt-get install -y --no-install-recommends dataset-fashion-mnist" in errors


def test_only_prepare_asks_for_an_install():
    import inspect

    from core.datasets import ensure_debian_package, load_tuxpaint
    from fashion.data import load_fashion_mnist

    for fn in (ensure_debian_package, load_tuxpaint, load_fashion_mnist):
        assert inspect.signature(fn).parameters["install"].default is False, fn.__name__


def _uploader() -> None:
    import streamlit as st

    from ui.common import image_upload

    image = image_upload("Photo", key="photo")
    st.markdown(f"image: {None if image is None else image.size}")


def test_a_session_keeps_a_bounded_copy_of_a_large_upload():
    from streamlit.testing.v1 import AppTest

    from ui.common import UPLOAD_SIDE

    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), "red").save(buf, format="PNG")
    at = AppTest.from_function(_uploader, default_timeout=60).run()
    at.file_uploader(key="photo").set_value(("big.png", buf.getvalue(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    kept = at.session_state["_photo_decoded"][1]
    assert max(kept.size) <= UPLOAD_SIDE and kept.size[0] > kept.size[1]
    assert f"image: {kept.size}" in [m.value for m in at.markdown]


def test_a_second_concurrent_heavy_call_in_one_session_is_told_busy(monkeypatch):
    import ui.common as common

    session = {"id": "session-a"}
    monkeypatch.setattr(common, "_session_id", lambda: session["id"])
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with common.heavy_slot():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(10)
    with pytest.raises(common.Busy, match="busy, try again"):
        with common.heavy_slot():
            pass
    session["id"] = "session-b"  # another person is not held up by this one
    with common.heavy_slot():
        pass
    session["id"] = "session-a"
    release.set()
    worker.join(10)
    with common.heavy_slot():  # free again once the first call finished
        pass
