"""The app under concurrent users: N headless Chromium sessions through one journey each.

    python bench/app_load.py [--sessions 1,10] [--models /path/to/models] [--app-dir .] [--out app_load]
                             [--env KEY=VALUE ...] [--config LABEL:KEY=VALUE[,KEY=VALUE] ... --repeats R]

Starts ``app.py`` (from ``--app-dir``) with Streamlit on a free loopback port, with its own
``RECS_MODELS_DIR``, runs one warm-up journey (models load; reported apart), then for each N in
``--sessions`` drives N concurrent sessions through the journey

    open the app → upload a photo to Hashtags → upload a garment to Fashion → search words in Product
    search → pick a listener in Music

and reports per action the p50/p95 time-to-result (from the action to its result being visible), the
errors (timeouts, Python exceptions shown in the page, error panels), the page-load timeouts, the
server's CPU-seconds per journey (utime + stime of the server process from ``/proc/<pid>/stat``
around the phase, divided by N) and the server's RSS after each phase. Every session uploads its own
images (a per-session shift of the photo) and searches its own words, so results cached for one
session do not make another's free; the warm-up and each phase use inputs no earlier journey used (a
phase measures the work each click needs, not results cached by the previous phase). Bounded: at most ``--max-sessions`` sessions, each action has a
timeout and each phase a time budget. Writes ``bench/results/<out>.json``.

Chromium runs on the same machine as the server, so on a small machine the browsers' own CPU slows
the server down; the CPU-seconds per journey are the server's alone.

Server settings are compared side by side: ``--env KEY=VALUE`` (repeatable) sets the server's environment
(``RECS_SERVER_THREADS=2``, ``RECS_ENCODER_PRECISION=int8``); each ``--config LABEL:KEY=VALUE,...`` is one
setting to compare, and ``--repeats R`` rounds start a fresh server for every config in turn (interleaved, so
every config sees the same neighbours), each with its own models folder when the config sets
``RECS_MODELS_DIR``. The result then holds every run and, per config, the medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.metrics import write_result  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402
from core.images import load_any  # noqa: E402
from playwright.async_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
ACTIONS = ["open", "hashtags", "fashion", "search", "listener"]
WORDS = ["red fruit", "winter hat", "fire engine", "green apple", "yellow shirt", "black shoe", "blue car",
         "wooden chair", "small dog", "orange flower", "white cup", "brown bear"]
TICKS = os.sysconf("SC_CLK_TCK")


# -- the server -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(app_dir: Path, env: dict[str, str], log_path: Path, timeout: float = 120.0) -> "tuple[subprocess.Popen, str]":
    """Start Streamlit on ``app_dir/app.py`` (the process's PID is the server's own); wait until healthy."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app_dir / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=app_dir, env={**env, "PYTHONPATH": str(app_dir)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s; see {log_path}")


def stop_app(proc: subprocess.Popen) -> None:
    """Stop the server by its own process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> "dict[str, float]":
    """Current and peak resident memory of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    return out


# -- the inputs -------------------------------------------------------------------------------------------
def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def session_images(n: int, folder: Path) -> "list[tuple[Path, Path]]":
    """(hashtag photo, garment photo) per session, each session's own (a shifted crop): own content hash."""
    cat = Image.fromarray(skdata.chelsea())
    garment = load_any("/usr/share/tuxpaint/stamps/clothes/t_jacket.png")
    paths = []
    for i in range(n):
        a = folder / f"photo-{i}.png"
        b = folder / f"garment-{i}.png"
        w, h = cat.size
        a.write_bytes(_png(cat.crop((i % 20, i // 20, w - 20 + i % 20, h - 20 + i // 20))))
        gw, gh = garment.size
        b.write_bytes(_png(garment.crop((i % 8, 0, gw - 8 + i % 8, gh))))
        paths.append((a, b))
    return paths


# -- one session ----------------------------------------------------------------------------------------
async def journey(browser: Any, url: str, index: int, images: "tuple[Path, Path]", page_timeout: float,
                  action_timeout: float, pid: Optional[int] = None) -> dict[str, Any]:
    """One user's journey; returns seconds per action and the errors met (a failed action ends the journey).

    With ``pid`` (a lone session) it also records the server's CPU-seconds spent on each action.
    """
    out: dict[str, Any] = {"session": index, "times": {}, "errors": [], "page_load_timeout": False, "cpu": {}}
    marks = [cpu_seconds(pid)] if pid else []

    def done(name: str, started: float) -> None:
        out["times"][name] = time.perf_counter() - started
        if pid:
            marks.append(cpu_seconds(pid))
            out["cpu"][name] = round(marks[-1] - marks[-2], 2)

    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await context.new_page()
    page.set_default_timeout(action_timeout * 1000)
    action = "open"
    try:
        start = time.perf_counter()
        try:  # the page's own load (HTML, scripts) and the first tab's content: both are the page load
            await page.goto(url, timeout=page_timeout * 1000)
            await page.get_by_text("Hashtags for a photo").wait_for(timeout=page_timeout * 1000)
            await page.locator('[data-testid="stFileUploader"]').first.wait_for(timeout=page_timeout * 1000)
        except PlaywrightTimeout:
            out["page_load_timeout"] = True
            raise
        done("open", start)

        action = "hashtags"
        start = time.perf_counter()
        await page.locator('[data-testid="stFileUploader"]').filter(has_text="Photo (jpg").locator(
            'input[type="file"]').set_input_files(str(images[0]))
        await page.locator('[data-testid="stCode"]:visible').first.wait_for()
        done("hashtags", start)

        action = "fashion"
        await page.get_by_role("tab", name="Fashion", exact=True).click()
        start = time.perf_counter()
        await page.locator('[data-testid="stFileUploader"]').filter(has_text="Garment photo").locator(
            'input[type="file"]').set_input_files(str(images[1]))
        await page.locator('[data-testid="stMarkdownContainer"]:visible', has_text="similarity").first.wait_for()
        done("fashion", start)

        action = "search"
        await page.get_by_role("tab", name="Product search", exact=True).click()
        box = page.get_by_label("Search words")
        await box.wait_for()
        start = time.perf_counter()
        await box.fill(WORDS[index % len(WORDS)] + ("" if index < len(WORDS) else f" {index}"))
        await box.press("Enter")
        await page.get_by_role("button", name="More like this").first.wait_for()
        done("search", start)

        action = "listener"
        await page.get_by_role("tab", name="Music", exact=True).click()
        combo = page.get_by_role("combobox", name="Listener (type to search)")
        await combo.wait_for()
        start = time.perf_counter()
        await combo.click()
        option = page.get_by_role("option").nth(1 + index % 5)
        await option.wait_for()
        name = (await option.inner_text()).strip()
        await option.click()
        await page.get_by_text(f"picks for {name}").first.wait_for()
        done("listener", start)

        action = "page"
        shown = await page.locator('[data-testid="stException"]').count()
        panels = await page.get_by_text("Something went wrong in the").count()
        if shown or panels:
            out["errors"].append({"action": action, "error": f"{shown} exception(s), {panels} error panel(s) shown"})
    except Exception as exc:  # noqa: BLE001 - a benchmark records every failure and goes on
        out["errors"].append({"action": action, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    finally:
        await context.close()
    return out


async def run_phase(url: str, n: int, images: "list[tuple[Path, Path]]", page_timeout: float,
                    action_timeout: float, budget: float, pid: Optional[int] = None,
                    first: int = 0) -> list[dict[str, Any]]:
    """N sessions at once in one headless Chromium, on inputs ``first`` … ``first + n - 1`` (photos, words,
    listener); the phase is cut at ``budget`` seconds."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tasks = [asyncio.create_task(journey(browser, url, first + i, images[first + i], page_timeout, action_timeout,
                                                 pid if n == 1 else None)) for i in range(n)]
            done, pending = await asyncio.wait(tasks, timeout=budget)
            for task in pending:
                task.cancel()
            results = [t.result() for t in tasks if t in done and not t.cancelled()]
            for i, task in enumerate(tasks):
                if task in pending:
                    results.append({"session": first + i, "times": {}, "page_load_timeout": False,
                                    "errors": [{"action": "phase", "error": f"cut at the {budget:.0f} s budget"}]})
            return results
        finally:
            await browser.close()


def percentiles(values: list[float]) -> dict[str, Optional[float]]:
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    arr = np.asarray(values)
    return {"n": len(values), "p50_s": round(float(np.percentile(arr, 50)), 2),
            "p95_s": round(float(np.percentile(arr, 95)), 2), "max_s": round(float(arr.max()), 2)}


def phase_summary(sessions: list[dict[str, Any]], cpu: float, wall: float, pid: int) -> dict[str, Any]:
    n = len(sessions)
    return {
        "sessions": n,
        "actions": {a: percentiles([s["times"][a] for s in sessions if a in s["times"]]) for a in ACTIONS},
        "errors": sum(len(s["errors"]) for s in sessions),
        "error_details": [dict(e, session=s["session"]) for s in sessions for e in s["errors"]],
        "page_load_timeouts": sum(bool(s["page_load_timeout"]) for s in sessions),
        "completed_journeys": sum(len(s["times"]) == len(ACTIONS) and not s["errors"] for s in sessions),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_s_per_journey": round(cpu / max(n, 1), 2),
        **({"server_cpu_s_by_action": sessions[0]["cpu"]} if n == 1 and sessions and sessions[0].get("cpu") else {}),
        "wall_s": round(wall, 1),
        **rss_mb(pid),
    }


def parse_env(items: "list[str]") -> dict[str, str]:
    """``KEY=VALUE`` strings → a dict; a malformed item raises ``ValueError`` with one sentence."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.strip().replace("_", "").isalnum():
            raise ValueError(f"{item!r} is not KEY=VALUE (a variable name, '=', then its value)")
        env[key.strip()] = value
    return env


def server_env(models: str, extra: dict[str, str]) -> dict[str, str]:
    """The server's environment: this process's, the models folder, offline settings, then ``--env``'s."""
    return {**os.environ, "RECS_MODELS_DIR": str(Path(models).resolve()), "KERAS_BACKEND": "torch",
            "HF_HUB_OFFLINE": "1", "RECS_NO_TQDM": "1", **extra}


def parse_config(text: str) -> "tuple[str, dict[str, str]]":
    """``LABEL:KEY=VALUE[,KEY=VALUE...]`` → (label, environment); malformed raises ``ValueError``."""
    label, sep, rest = text.partition(":")
    if not sep or not label.strip():
        raise ValueError(f"{text!r} is not LABEL:KEY=VALUE[,KEY=VALUE...]")
    return label.strip(), parse_env([x for x in rest.split(",") if x.strip()])


def measure(app_dir: Path, env: dict[str, str], counts: "list[int]", images: "list[tuple[Path, Path]]", first: int,
            args: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    """One server from start to stop: the warm-up journey, then each phase of ``counts`` sessions.

    Inputs ``first`` … are this run's own (the warm-up takes one, each phase N more), so no journey reuses
    another's photo or words.
    """
    proc, url = start_app(app_dir, env, log_path)
    result: dict[str, Any] = {"load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "phases": {},
                              "server_log": str(log_path)}
    try:
        result["server_start"] = {"server_cpu_s": round(cpu_seconds(proc.pid), 2), **rss_mb(proc.pid)}
        if not args.no_warmup:  # models load on the first journey: measured apart from the steady state
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            warm = asyncio.run(run_phase(url, 1, images, args.page_timeout * 4, args.action_timeout * 3, args.budget,
                                         proc.pid, first=first))
            result["warmup"] = phase_summary(warm, cpu_seconds(proc.pid) - cpu0, time.perf_counter() - t0, proc.pid)
            print(f"warm-up: {result['warmup']['server_cpu_s']} CPU-s, errors {result['warmup']['errors']}",
                  file=sys.stderr)
        first += 1
        for n in counts:
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            sessions = asyncio.run(run_phase(url, n, images, args.page_timeout, args.action_timeout, args.budget,
                                             proc.pid, first=first))
            first += n
            summary = phase_summary(sessions, cpu_seconds(proc.pid) - cpu0, time.perf_counter() - t0, proc.pid)
            result["phases"][str(n)] = summary
            print(f"N={n}: {summary['server_cpu_s_per_journey']} CPU-s/journey, errors {summary['errors']}, "
                  f"page-load timeouts {summary['page_load_timeouts']}, "
                  + ", ".join(f"{a} p50 {v['p50_s']} s" for a, v in summary["actions"].items())
                  + (f"; server CPU-s by action {summary['server_cpu_s_by_action']}" if n == 1 else ""), file=sys.stderr)
        result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stop_app(proc)
    return result


def _median(values: "list[Optional[float]]") -> Optional[float]:
    kept = [v for v in values if v is not None]
    return round(float(np.median(kept)), 2) if kept else None


def config_medians(runs: "list[dict[str, Any]]") -> dict[str, Any]:
    """Per phase, over the runs of one config: the median of each action's p50 and p95, of the server's
    CPU-seconds per journey and of the wall time; errors and page-load timeouts are summed."""
    out: dict[str, Any] = {}
    for n in dict.fromkeys(n for r in runs for n in r["phases"]):
        phases = [r["phases"][n] for r in runs if n in r["phases"]]
        out[n] = {
            "runs": len(phases),
            "actions": {a: {"p50_s": _median([p["actions"][a]["p50_s"] for p in phases]),
                            "p95_s": _median([p["actions"][a]["p95_s"] for p in phases])} for a in ACTIONS},
            "errors": sum(p["errors"] for p in phases),
            "page_load_timeouts": sum(p["page_load_timeouts"] for p in phases),
            "completed_journeys": sum(p["completed_journeys"] for p in phases),
            "server_cpu_s_per_journey": _median([p["server_cpu_s_per_journey"] for p in phases]),
            "server_cpu_s_per_journey_runs": [p["server_cpu_s_per_journey"] for p in phases],
            "wall_s": _median([p["wall_s"] for p in phases]),
        }
    return out


def run_configs(app_dir: Path, base_env: dict[str, str], configs: "list[tuple[str, dict[str, str]]]",
                counts: "list[int]", args: argparse.Namespace, work: Path,
                save: Optional[Callable[[dict[str, Any]], None]] = None) -> dict[str, Any]:
    """``args.repeats`` rounds, each starting one server per config in turn; every run and the medians.

    ``save`` gets the result so far after every run, so a long comparison cut short keeps its finished rounds.
    """
    per_run = 1 + sum(counts)
    images = session_images(per_run * len(configs) * args.repeats, work)
    out: dict[str, Any] = {"repeats": args.repeats, "order": [], "configs": {
        label: {"env": env, "runs": []} for label, env in configs}}
    first = 0
    for round_ in range(args.repeats):
        for label, env in configs:
            print(f"round {round_ + 1}/{args.repeats}: {label} {env}", file=sys.stderr)
            try:
                run = measure(app_dir, {**base_env, **env}, counts, images, first,
                              args, work / f"streamlit-{label}-{round_}.log")
            except RuntimeError as exc:  # a server that never became healthy: recorded, the other runs go on
                run = {"error": str(exc), "phases": {}}
            first += per_run
            out["configs"][label]["runs"].append(run)
            out["order"].append(label)
            for entry in out["configs"].values():
                entry["median"] = config_medians(entry["runs"])
            if save:
                save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,10", help="comma-separated N, run in this order")
    parser.add_argument("--models", default=os.environ.get("RECS_MODELS_DIR", str(ROOT / "models")),
                        help="RECS_MODELS_DIR for the app (built by `make models`)")
    parser.add_argument("--app-dir", default=str(ROOT), help="the checkout whose app.py is served")
    parser.add_argument("--page-timeout", type=float, default=30.0, help="seconds for the page to load")
    parser.add_argument("--action-timeout", type=float, default=120.0, help="seconds for each action's result")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per phase before it is cut")
    parser.add_argument("--max-sessions", type=int, default=20)
    parser.add_argument("--no-warmup", action="store_true", help="measure the first journey cold")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="the server's environment (repeatable), e.g. RECS_SERVER_THREADS=2")
    parser.add_argument("--config", action="append", default=[], metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
                        help="one server setting to compare (repeatable); each round starts every config in turn")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of --config (interleaved)")
    parser.add_argument("--out", default="app_load", help="result name: bench/results/<out>.json")
    args = parser.parse_args()
    counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    try:
        extra = parse_env(args.env)
        configs = [parse_config(c) for c in args.config]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not counts or min(counts) < 1 or max(counts) > args.max_sessions:
        print(f"error: --sessions must be between 1 and {args.max_sessions}", file=sys.stderr)
        sys.exit(2)
    if args.repeats < 1 or len({label for label, _ in configs}) != len(configs):
        print("error: --repeats must be at least 1 and every --config label different", file=sys.stderr)
        sys.exit(2)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        sys.exit(2)

    app_dir = Path(args.app_dir).resolve()
    env = server_env(args.models, extra)
    work = Path(tempfile.mkdtemp(prefix="app-load-"))
    git = subprocess.run(["git", "-C", str(app_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result: dict[str, Any] = {
        "app_dir": str(app_dir), "commit": git.stdout.strip(), "models": env["RECS_MODELS_DIR"], "env": extra,
        "cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "journey": "open → hashtag upload → fashion upload → word search → pick a listener",
        "page_timeout_s": args.page_timeout, "action_timeout_s": args.action_timeout,
    }
    if configs:
        result.update(run_configs(app_dir, env, configs, counts, args, work,
                                  save=lambda partial: write_result(args.out, {**result, **partial, "complete": False})))
        result["complete"] = True
        result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    else:
        images = session_images(1 + sum(counts), work)  # the warm-up's and every phase's own inputs
        run = measure(app_dir, env, counts, images, 0, args, work / "streamlit.log")
        result.update({k: v for k, v in run.items() if k != "load_avg_at_start"})
    path = write_result(args.out, result)
    print(path)


if __name__ == "__main__":
    main()
