"""A service's listening log → a music dataset trained under its own name, from the Data page or the CLI.

The fixture ``tests/fixtures/music/logs/service_log.csv`` is a log in an export's own shape (its own column
names, ISO-8601 times, accented artist names, one row without a listener); training it takes a few seconds.
Every degenerate log is refused with one sentence and leaves no bundle; a failed save replaces nothing. The
page test goes upload → columns → Train → the queued job (run here in-process, as a worker would) → the Music
tab's dataset picker.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch").set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "tests" / "fixtures" / "music" / "logs" / "service_log.csv"
COLUMNS = {"user": "listener_id", "item": "track_id", "weight": "play_count", "timestamp": "played_at",
           "title": "track_name", "artist": "artist_name"}


def _music_files(name: str) -> list[str]:
    """Everything of ``name`` under models/music, hidden work folders included."""
    from music.mf.data import music_dir

    root = music_dir()
    return sorted(p.name for p in root.iterdir() if name in p.name) if root.is_dir() else []


# ------------------------------------------------------------------------------------------------
# reading


def test_the_reader_maps_the_logs_own_columns():
    from music.logs import load_log

    ds = load_log("csv", LOG, name="fixture-log", columns=COLUMNS, weight_kind="plays")
    rows = [ln.split(",") for ln in LOG.read_text(encoding="utf-8").splitlines()[1:]]
    good = [r for r in rows if r[0]]
    assert ds.name == "fixture-log" and ds.kind == "implicit"
    assert ds.report["malformed_rows"] == 1  # the row without a listener
    assert ds.n_users == len({r[0] for r in good})
    plays: dict[tuple[str, str], float] = {}
    for r in good:
        plays[(r[0], r[1])] = plays.get((r[0], r[1]), 0) + float(r[2])
    w = ds.interactions.set_index(["user", "item"])["weight"]
    assert {k: float(w[k]) for k in plays} == plays  # repeated plays add up
    assert len(ds.events) == len(good)
    first = good[0]
    stamp = ds.events[(ds.events["user"] == first[0])]["timestamp"].min()
    import pandas as pd

    assert stamp == int(pd.Timestamp(first[3]).timestamp())  # ISO times read as UTC seconds
    info = ds.item_info()
    assert "Björk" in set(info["artist"]) and info.loc["trk-000", "title"] == "Hoppípolla"


def test_the_header_preview_reads_only_the_first_bytes_and_guesses_usual_names():
    from music.logs import HEAD_BYTES, read_header

    found = read_header(LOG.read_bytes())
    assert found["columns"] == list(COLUMNS.values()) and found["sep"] == ","
    assert len(found["rows"]) == 5 and found["rows"][0][0] == "user000"
    tsv = ("User\tItem\tRating\n" + "u1\ti1\t4\n" * 20000).encode()
    assert len(tsv) > HEAD_BYTES
    found = read_header(tsv)
    assert found["sep"] == "\t" and found["guess"] == {"user": "User", "item": "Item", "weight": "Rating"}


def test_load_csv_without_a_mapping_keeps_its_usual_names():
    from music.data.sources import load_csv

    ds = load_csv(ROOT / "tests" / "fixtures" / "music" / "csv" / "plays.csv")
    assert ds.name == "csv" and ds.report["malformed_rows"] == 2


# ------------------------------------------------------------------------------------------------
# refusals: one sentence, nothing saved

def _grid(value: str = "", rows: int = 8) -> str:
    """An ordinary ratings log (8 listeners × 6 items, 1–5), with one value replaced when ``value`` is given."""
    cells = [f"u{u},i{i},{value if value and (u, i) == (1, 1) else 1 + (u * 7 + i * 3) % 5}"
             for u in range(rows) for i in range(6)]
    return "user,item,rating\n" + "\n".join(cells) + "\n"


DEGENERATE = {
    "one-listener": ("user,item,plays\nu1,i1,3\nu1,i2,2\nu1,i3,5\nu1,i4,1\n", {}, "1 listener"),
    "one-item": ("user,item,plays\nu1,i1,3\nu2,i1,2\nu3,i1,5\n", {}, "1 item"),
    "too-few": ("user,item,plays\nu1,i1,3\nu2,i2,2\n", {}, "2 usable interaction"),
    "constant-ratings": ("user,item,rating\n" + "".join(f"u{u},i{i},4\n" for u in range(3) for i in range(3)), {},
                         "constant ratings"),
    "rating-1e30": (_grid("1e30"), {}, "not finite numbers in -100..100"),
    "rating-nan": (_grid("nan"), {}, "not finite numbers"),
    "plays-inf": (_grid("inf").replace("rating", "plays"), {}, "not finite numbers in 0..1e+09"),
    "plays-negative": (_grid("-3").replace("rating", "plays"), {}, "not finite numbers in 0..1e+09"),
    "no-such-column": (_grid(), {"columns": {"user": "user", "item": "song"}}, "has no column 'song'"),
    "no-item-column": (_grid(), {"columns": {"user": "user"}}, "choose the item column"),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_a_degenerate_log_is_one_sentence_and_saves_nothing(case, tmp_path):
    from music.logs import train_log

    text, kwargs, words = DEGENERATE[case]
    path = tmp_path / "log.csv"
    path.write_text(text)
    name = f"bad-{case}"
    with pytest.raises(ValueError) as err:
        train_log(name, "csv", path, label="log.csv", **kwargs)
    message = str(err.value)
    assert words in message and "\n" not in message, message
    assert _music_files(name) == []


@pytest.mark.parametrize("name,words", [("csv", "built-in dataset"), ("lastfm-2k", "built-in dataset"),
                                        ("../etc", "not allowed"), ("My Log", "not allowed"), ("", "not allowed"),
                                        ("x" * 65, "not allowed")])
def test_a_name_is_checked_before_it_becomes_a_folder(name, words):
    from music.logs import LogError, check_name

    with pytest.raises(LogError, match=words):
        check_name(name)


def test_a_diverging_run_saves_nothing(tmp_path, monkeypatch):
    """A loss that explodes fails the job with the trainer's own sentence; no bundle of that name appears."""
    import music.mf.train as mftrain
    from core.jobs.handlers import Progress, execute

    real = mftrain.mf_config
    monkeypatch.setattr(mftrain, "mf_config", lambda *a, **k: {**real(*a, **k), "lr": 1e20, "epochs": 2})
    outcome = execute("music.jobs:train_log_job", {"name": "diverges", "source": "csv", "path": str(LOG),
                                                   "columns": COLUMNS, "weight_kind": "plays"},
                      Progress(None, tmp_path / "scratch"))
    assert "diverged" in outcome.get("failed", "") or "exploded" in outcome.get("failed", ""), outcome
    assert "nothing was saved" in outcome["failed"]
    assert _music_files("diverges") == []


# ------------------------------------------------------------------------------------------------
# atomic training


@pytest.fixture()
def small_log(tmp_path):
    from music.logs import load_log

    return load_log("csv", LOG, name="atomic-log", columns=COLUMNS, weight_kind="plays")


@pytest.mark.parametrize("failure", ["error", "cancel"])
def test_a_failure_mid_save_replaces_nothing(small_log, monkeypatch, failure):
    from core.jobs import JobCancelled
    from music.mf import baselines
    from music.mf.train import bundle_dir, load_bundle, train, trained_datasets

    name = f"atomic-{failure}"
    first = train(name, data=small_log, force=True, mf_params={"epochs": 2})
    before = {p.name: p.read_bytes() for p in bundle_dir(name).iterdir()}
    reviewed = small_log.interactions.copy()
    reviewed.loc[0, "weight"] += 5  # other data: the retrain is not skipped as fresh
    small_log.interactions = reviewed

    def broken_save(self, stem):
        Path(str(stem) + ".npz").write_bytes(b"half a file")
        raise (JobCancelled("stopped by signal SIGTERM") if failure == "cancel" else OSError(28, "No space left"))

    monkeypatch.setattr(baselines.Popularity, "save", broken_save)
    with pytest.raises((OSError, JobCancelled)):
        train(name, data=small_log, force=True, mf_params={"epochs": 2})
    after = {p.name: p.read_bytes() for p in bundle_dir(name).iterdir()}
    assert after == before  # the good bundle, byte for byte
    assert _music_files(name) == [name]  # no hidden work or old folder left beside it
    assert load_bundle(name).manifest["dataset_checksum"] == first["dataset_checksum"]
    assert name in trained_datasets()


def test_a_retrain_swaps_the_new_bundle_in(small_log):
    from music.mf.train import bundle_dir, load_bundle, train

    train("swap-log", data=small_log, force=True, mf_params={"epochs": 1})
    changed = small_log.interactions.copy()
    changed.loc[0, "weight"] += 5
    small_log.interactions = changed
    second = train("swap-log", data=small_log, force=True, mf_params={"epochs": 1})
    assert load_bundle("swap-log").manifest["dataset_checksum"] == second["dataset_checksum"]
    assert _music_files("swap-log") == ["swap-log"] and (bundle_dir("swap-log") / "bundle.json").is_file()


# ------------------------------------------------------------------------------------------------
# the job, in-process


def test_the_job_trains_a_log_the_music_tab_lists(tmp_path):
    from core.jobs.handlers import Progress, execute
    from music import jobs
    from music.mf import service
    from music.mf.train import load_bundle, trained_datasets
    from music.next.service import NextBundle

    upload = jobs.save_upload(LOG.read_bytes())
    channel = io.StringIO()
    outcome = execute(jobs.HANDLER, {"name": "my-radio", "source": "csv", "upload": str(upload),
                                     "columns": COLUMNS, "weight_kind": "plays", "label": "service_log.csv"},
                      Progress(channel, tmp_path / "scratch", interval=0))
    result = outcome.get("done")
    assert result is not None, outcome
    assert not upload.exists()  # the upload is not kept once read
    assert "my-radio" in trained_datasets() and "my-radio" in jobs.trained_logs()
    bundle = load_bundle("my-radio")
    assert bundle.manifest["summary"]["users"] == 24 and "your log" in bundle.label
    picks = service.recommend_user(bundle, "user000", 5)
    assert len(picks) == 5 and all(p.reason for p in picks)
    reports = [json.loads(line) for line in channel.getvalue().splitlines()]
    epochs = [r["message"] for r in reports if r["message"].startswith("MF epoch")]
    assert epochs and all("validation NDCG@10" in m for m in epochs), reports[:5]
    fractions = [r["progress"] for r in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert result["validation"]["metric"] == "ndcg" and 0 <= result["validation"]["value"] <= 1
    assert result["up_next"]["trained"] is True  # the log is dated
    assert NextBundle("my-radio").recommend(user="user000", top=3)


# ------------------------------------------------------------------------------------------------
# the command line


def _cli(args: list[str], models: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RECS_MODELS_DIR=str(models), PYTHONPATH=str(ROOT), RECS_NO_TQDM="1")
    return subprocess.run([sys.executable, "-m", "music", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("case", ["constant-ratings", "no-such-column", "one-listener"])
def test_the_cli_exits_2_with_one_line_on_a_degenerate_log(case, tmp_path):
    text, kwargs, words = DEGENERATE[case]
    path = tmp_path / "log.csv"
    path.write_text(text)
    cols = [f"--item-col={kwargs['columns']['item']}"] if "columns" in kwargs else []
    models = tmp_path / "models"
    out = _cli(["train", "--dataset", "csv", "--path", str(path), "--name", "my-log", *cols], models)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and words in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not (models / "music" / "my-log").exists()
    assert not (models / "music").exists() or not any((models / "music").iterdir())


@pytest.mark.slow(reason="python -m music train in a subprocess")
def test_the_cli_trains_a_log_under_its_name(tmp_path):
    models = tmp_path / "models"
    flags = ["--user-col", "listener_id", "--item-col", "track_id", "--weight-col", "play_count",
             "--weight-kind", "plays", "--title-col", "track_name", "--artist-col", "artist_name"]
    out = _cli(["train", "--dataset", "csv", "--path", str(LOG), "--name", "cli-log", *flags, "--json"], models)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["name"] == "cli-log" and result["up_next"] is None  # no time column chosen: no up next
    assert (models / "music" / "cli-log" / "bundle.json").is_file()
    assert not list((models / "music").glob("next_cli-log*"))


# ------------------------------------------------------------------------------------------------
# the Data page


def _data_tab() -> None:
    from ui import data

    data.render()


def _music_tab() -> None:
    from ui import music

    music.render()


@pytest.mark.slow(reason="AppTest of the Data page's log import (~7 s)")
def test_the_data_page_uploads_picks_columns_and_queues_training(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import core.jobs.worker
    import ui.profile
    from core.jobs import JobQueue
    from core.jobs.handlers import Progress, execute
    from music.mf.train import trained_datasets

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr(ui.profile, "heavy_permission", lambda: (True, ""))
    started: list[str] = []
    monkeypatch.setattr(core.jobs.worker, "ensure_worker", lambda u, *a, **k: started.append(u))
    at = AppTest.from_function(_data_tab, default_timeout=60).run()
    assert not at.exception
    assert any("Listening logs" in h.value for h in at.subheader)
    at.file_uploader(key="data_log_file").upload("service_log.csv", LOG.read_bytes(), "text/csv").run()
    assert not at.exception
    boxes = {b.key: b for b in at.selectbox if b.key and b.key.startswith("data_log_col_")}
    assert boxes["data_log_col_user"].options == list(COLUMNS.values())  # the file's own header
    for role, column in COLUMNS.items():
        boxes[f"data_log_col_{role}"].set_value(column)
    at.text_input(key="data_log_name").input("page-radio")
    at.run()
    at.button(key="data_log_train").click().run()
    assert not at.exception
    assert any("Queued training" in s.value for s in at.success), [e.value for e in at.error]
    assert started == [url]
    [job] = JobQueue(url).list()
    assert job.kind == "music.train-log" and job.params["columns"] == COLUMNS
    assert job.params["weight_kind"] == "plays" and Path(job.params["upload"]).read_bytes() == LOG.read_bytes()

    # What the worker then runs, here in-process: the log becomes a dataset the Music tab lists.
    outcome = execute(job.handler, job.params, Progress(None, tmp_path / "scratch"))
    assert "done" in outcome, outcome
    assert "page-radio" in trained_datasets()
    music = AppTest.from_function(_music_tab, default_timeout=120).run()
    picker = music.selectbox(key="music_dataset")
    assert "page-radio" in picker.options
    picker.set_value("page-radio").run()
    assert not music.exception
    assert any("page-radio (your log: service_log.csv)" in c.value for c in music.caption)


def test_the_page_refuses_a_column_the_file_lacks_and_an_existing_name(tmp_path, monkeypatch):
    from music import jobs
    from music.logs import LogError

    monkeypatch.setenv("RECS_DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    ok = (True, "")
    with pytest.raises(LogError, match="administrators"):
        jobs.queue_training("x-log", permission=(False, "Only administrators may train models from logs."),
                            upload=LOG.read_bytes(), columns=COLUMNS)
    with pytest.raises(LogError, match="no column 'song'"):
        jobs.queue_training("x-log", permission=ok, upload=LOG.read_bytes(),
                            columns={"user": "listener_id", "item": "song"})
    with pytest.raises(LogError, match="built-in dataset"):
        jobs.queue_training("simulated", permission=ok, upload=LOG.read_bytes(), columns=COLUMNS)
    from music.mf.train import bundle_dir

    bundle_dir("taken-log").mkdir(parents=True)
    (bundle_dir("taken-log") / "bundle.json").write_text("{}")
    try:
        with pytest.raises(LogError, match="already exists"):
            jobs.queue_training("taken-log", permission=ok, upload=LOG.read_bytes(), columns=COLUMNS)
    finally:
        shutil.rmtree(bundle_dir("taken-log"))
    assert jobs.jobs() == []


def test_a_dated_log_without_repeat_sessions_trains_picks_and_says_why_not_up_next(tmp_path):
    """Plays a minute apart are one session per listener: nothing to learn "what comes next" from or to check it on."""
    from music.logs import train_log
    from music.mf.train import load_bundle

    rows = [f"u{u},i{(u * 3 + k) % 9},{1 + k % 3},{1_700_000_000 + u * 10_000 + k * 60}" for u in range(12)
            for k in range(6)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,plays,timestamp\n" + "\n".join(rows) + "\n")
    result = train_log("one-session-log", "csv", path)
    assert result["up_next"]["trained"] is False and "three listening sessions" in result["up_next"]["reason"]
    assert load_bundle("one-session-log").manifest["summary"]["users"] == 12
    assert _music_files("one-session-log") == ["one-session-log"]  # no up-next files


def test_a_degenerate_upload_fails_its_job_with_the_sentence_and_is_deleted(tmp_path):
    from core.jobs.handlers import Progress, execute
    from music import jobs

    upload = jobs.save_upload(DEGENERATE["constant-ratings"][0].encode())
    outcome = execute(jobs.HANDLER, {"name": "constant-upload", "source": "csv", "upload": str(upload),
                                     "columns": {"user": "user", "item": "item", "weight": "rating"},
                                     "weight_kind": "rating", "label": "ratings.csv"},
                      Progress(None, tmp_path / "scratch"))
    assert outcome == {"failed": "every rating in dataset 'constant-upload' is 4: constant ratings carry no "
                                 "preference to learn"}
    assert not upload.exists() and _music_files("constant-upload") == []


@pytest.mark.browser
def test_a_log_uploaded_in_the_browser_trains_and_appears_in_the_music_tab(browser_page, artifacts_dir):
    """The bar, in Chromium against the running app and its real worker: no command line anywhere."""
    page = browser_page
    page.get_by_role("tab", name="Data").click()
    panel = page.get_by_role("tabpanel", name="Data")
    panel.get_by_text("Listening logs", exact=True).wait_for()
    uploader = panel.locator('[data-testid="stFileUploader"]').filter(has_text="Log file")
    uploader.locator('input[type="file"]').set_input_files(str(LOG))
    from ui.data_music import ROLES

    for role, column in COLUMNS.items():
        picker = panel.get_by_label(ROLES[role], exact=True)
        picker.scroll_into_view_if_needed()  # a drop-down closes when the page scrolls under it
        page.wait_for_timeout(300)
        picker.click()
        page.get_by_role("option", name=column, exact=True).click()
    panel.get_by_label("Name in the Music tab", exact=True).fill("browser-radio")
    panel.get_by_label("Name in the Music tab", exact=True).press("Enter")
    panel.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Train music log browser-radio — done").wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts_dir / "data-listening-log.png"), full_page=True)

    page.get_by_role("tab", name="Music").click()
    music = page.get_by_role("tabpanel", name="Music")
    music.get_by_role("combobox").first.click()
    page.get_by_role("option", name="browser-radio", exact=True).click()
    music.get_by_text("browser-radio (your log: service_log.csv)", exact=False).wait_for()
    page.screenshot(path=str(artifacts_dir / "music-listening-log.png"), full_page=True)
