"""`make run`: the app first, then the default models built beside it; each tab fills in as its model is ready.

    python scripts/serve.py [--port 8501] [--jobs 2]

Why the app comes first: building the default models takes minutes on a fresh machine, and a person who typed
`make run` wants to open the app, read what each tab does and add their own data meanwhile. The app is started
(its log goes to ``<models>/app.log``), then the build runner (scripts/build_models.py) draws its progress lines
here and writes its state to ``<models>/build-status.json``, which the app shows as a banner and follows: a tab
whose model is not ready yet says so, and shows results once it is. The build runs in its own processes, never in
the app's. When the build ends, the app's log follows here; Ctrl-C stops the build (finished models are kept) and
the app.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_models  # noqa: E402


def start_app(port: int, log_path: Path) -> subprocess.Popen:
    """Streamlit on loopback, in its own process group so one signal stops it and its job worker."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(port: int, app: subprocess.Popen, seconds: float = 180.0) -> bool:
    """True once the app answers its health check; False if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and app.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def follow(log_path: Path, app: subprocess.Popen, start: int) -> None:
    """Print the app's log from byte ``start`` on, as it grows, until the app exits."""
    with log_path.open("rb") as fh:
        fh.seek(start)
        while True:
            chunk = fh.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            elif app.poll() is not None:
                return
            else:
                time.sleep(0.5)


def stop(app: subprocess.Popen) -> None:
    """Stop the app and the job worker it started (same process group)."""
    if app.poll() is None:
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8501)))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MODEL_JOBS", 2)))
    args = parser.parse_args(argv)
    # a SIGTERM (a service manager, `kill`, `timeout`) stops like Ctrl-C: the build's steps end cleanly and the app,
    # which runs in its own process group, is stopped too instead of being left running
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    models = Path(os.environ.get("RECS_MODELS_DIR", ROOT / "models"))
    models.mkdir(parents=True, exist_ok=True)
    log_path = models / "app.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    app = start_app(args.port, log_path)
    try:
        if not wait_healthy(args.port, app):
            print(f"error: the app did not start; the end of {log_path}:\n{build_models.log_tail(log_path)}",
                  file=sys.stderr)
            return 1
        print(f"Recs Studio is up: http://127.0.0.1:{args.port} (its log: {log_path}). The default models build "
              f"now; each tab fills in as its model is ready.", flush=True)
        code = build_models.main(["--jobs", str(args.jobs)])
        if code == 130:
            return 130
        if code:
            print("the app keeps running: the tabs whose model failed say so", flush=True)
        print("the app's log follows; Ctrl-C stops the app", flush=True)
        follow(log_path, app, start)
        return app.returncode or 0
    except KeyboardInterrupt:
        return 130
    finally:
        stop(app)


if __name__ == "__main__":
    sys.exit(main())
