"""Tagged photos → the hashtag model: importing a zip (CSV or Flickr8k layout), refusals that store nothing,
model versions and the rule that a worse retrain is kept but not served, the retrain job run in-process, and
the Data page's tagged-photos section.

Small real data: the hashtag CSV fixture (three pictures) as the built-in dataset and the Flickr8k fixture
(three photos with five captions each); training is one or two epochs.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.catalog.archive import Limits
from core.feedback import FeedbackError, FeedbackStore
from core.feedback.store import close_engine
from tests.paths import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "hashtag"
CSV_DIR, FLICKR_DIR = FIXTURES / "csv", FIXTURES / "flickr8k"
ADMIN, USER = (True, ""), (False, "Only administrators may do that here.")


@pytest.fixture()
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'fb.sqlite3'}"
    db = FeedbackStore.open(url, images_dir=tmp_path / "images")
    db.create_profile("ann")
    db.create_profile("bob")
    yield db
    close_engine(url)


def make_zip(files: dict[str, bytes | Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return buf.getvalue()


def csv_zip(csv_text: str, photos: tuple[str, ...] = ("cat.png", "beach.jpg", "tree.png"), folder: str = "trip/"
            ) -> bytes:
    files: dict[str, bytes | Path] = {f"{folder}{p}": CSV_DIR / "images" / p for p in photos}
    files[f"{folder}tags.csv"] = csv_text.encode()
    return make_zip(files)


GOOD_CSV = "image,hashtags\ncat.png,\"#Kitten, cat\"\nbeach.jpg,sand sea #Summer\ntree.png,\n"


def nothing_stored(store: FeedbackStore) -> bool:
    return store.tagged_images() == [] and store.import_batches() == [] and not any(store.images_dir.glob("*"))


# ----------------------------------------------------------------------------------------------
# the importer


def test_csv_import_is_one_batch_accepted_for_an_admin_pending_otherwise(store):
    from hashtag import service

    report = service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="trip.zip", permission=ADMIN)
    assert (report["kind"], report["source"], report["photos"], report["rows"]) == ("csv", "tags.csv", 2, 3)
    assert report["skipped"] == {"no usable hashtag": 1} and report["review"] == "accepted"
    stored = {tuple(r.tags): r for r in store.tagged_images("ann")}
    assert set(stored) == {("kitten", "cat"), ("sand", "sea", "summer")}  # '#', commas and case normalised
    assert {(r.batch, r.review) for r in stored.values()} == {(report["batch"], "accepted")}
    second = service.import_photos(store, "bob", csv_zip(GOOD_CSV), label="same.zip", permission=USER)
    assert second["review"] == "pending" and second["batch"] != report["batch"]
    assert [b.reviews for b in store.import_batches()] == [{"pending": 2}, {"accepted": 2}]  # newest first
    assert [b.id for b in service.imports(store, "bob")] == [second["batch"]]


def test_a_spreadsheet_csv_with_a_bom_and_quoted_header_imports(store):
    from hashtag import service

    text = '\ufeff"Image","Hashtags"\r\ncat.png,#cat\r\n'
    report = service.import_photos(store, "ann", csv_zip(text, ("cat.png",)), label="excel.zip", permission=USER)
    assert report["photos"] == 1 and [r.tags for r in store.tagged_images("ann")] == [["cat"]]


def test_flickr8k_layout_imports_caption_words(store):
    from hashtag import service

    files: dict[str, bytes | Path] = {f"Flicker8k_Dataset/{p.name}": p for p in (FLICKR_DIR / "Flicker8k_Dataset").iterdir()}
    files["Flickr8k.token.txt"] = FLICKR_DIR / "Flickr8k.token.txt"
    report = service.import_photos(store, "ann", make_zip(files), label="flickr.zip", permission=USER)
    assert (report["kind"], report["photos"], report["review"]) == ("flickr8k", 3, "pending")
    tags = [r.tags for r in store.tagged_images("ann")]
    assert any("girl" in t for t in tags), tags  # "A little girl …" in most of the first photo's captions


def _pixel_bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, "PNG")  # 10 KB on disk, 81 megapixels decoded
    return out.getvalue()


REFUSALS = {
    "no csv": (lambda: make_zip({"a/cat.png": CSV_DIR / "images" / "cat.png"}), {}, "no CSV with 'image' and"),
    "missing": (lambda: csv_zip("image,hashtags\ncat.png,cat\ngone.png,x\nlost.jpg,y\n", ("cat.png",)), {},
                "2 of 3 photos listed in tags.csv are not in the zip (gone.png, lost.jpg)"),
    "no tags": (lambda: csv_zip("image,hashtags\ncat.png,#\nbeach.jpg,!!! ,\n"), {}, "No row of tags.csv has a usable"),
    "outside": (lambda: csv_zip("image,hashtags\n../cat.png,cat\n/etc/hosts,x\n"), {},
                "2 image paths in tags.csv point outside its folder"),
    "undecodable": (lambda: make_zip({"t/tags.csv": b"image,hashtags\ncat.png,cat\nnote.jpg,x\n",
                                      "t/cat.png": CSV_DIR / "images" / "cat.png", "t/note.jpg": b"not a photo"}), {},
                    "1 of 2 photos could not be read, so nothing was imported: note.jpg"),
    "pixels": (lambda: make_zip({"t/tags.csv": b"image,hashtags\nhuge.png,big\n", "t/huge.png": _pixel_bomb()}), {},
               "the limit is 64 megapixels"),
    "archive size": (lambda: csv_zip(GOOD_CSV), {"limits": Limits(max_archive_bytes=1000)}, "archives over"),
    "not a zip": (lambda: b"just text", {}, "is not a zip archive"),
    "zip slip": (lambda: make_zip({"../evil.png": CSV_DIR / "images" / "cat.png"}), {}, "points outside the archive"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_bad_import_gets_one_sentence_and_stores_nothing(store, case):
    from hashtag.imports import ImportRefused, import_zip

    build, kwargs, expected = REFUSALS[case]
    with pytest.raises(ImportRefused) as err:
        import_zip(store, "ann", build(), label="mine.zip", **kwargs)
    message = str(err.value)
    assert expected in message and "\n" not in message and message.endswith("."), message
    assert "recs-import-" not in message  # never the server's temporary folder
    assert nothing_stored(store)


def test_too_many_photos_is_refused(store, monkeypatch):
    from hashtag import imports

    monkeypatch.setattr(imports, "MAX_PHOTOS", 1)
    with pytest.raises(imports.ImportRefused, match="one import may hold at most 1 "):
        imports.import_zip(store, "ann", csv_zip(GOOD_CSV), label="x.zip")
    assert nothing_stored(store)


def test_an_import_is_removed_by_its_owner_or_an_admin_only(store):
    from hashtag import service

    first = service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="a.zip", permission=USER)
    with pytest.raises(FeedbackError, match="Only administrators"):
        service.review_import(store, first["batch"], "accepted", reviewer="ann", permission=USER)
    assert {r.review for r in store.tagged_images()} == {"pending"}
    with pytest.raises(FeedbackError, match="belongs to another profile"):
        service.remove_import(store, first["batch"], profile="bob", permission=USER)
    assert service.remove_import(store, first["batch"], profile="ann", permission=USER) == {"tagged_images": 2,
                                                                                          "files": 2}
    assert nothing_stored(store)
    second = service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="b.zip", permission=USER)
    service.remove_import(store, second["batch"], profile="bob", permission=ADMIN)
    assert nothing_stored(store)


# ----------------------------------------------------------------------------------------------
# versions, the switch rule and the retrain job


@pytest.fixture()
def tiny_model(tmp_path):
    """The CSV fixture as the built-in dataset, with a one-epoch first version (``v1``, the model folder)."""
    from hashtag import data
    from hashtag.train import TrainConfig, train

    ds = data.build_dataset(data.csv_examples(CSV_DIR / "hashtags.csv"), tmp_path / "csv", name="csv")
    train(ds.root, TrainConfig(epochs=1, batch_size=4), evaluate_after=False)
    return ds.root


def _record_val(folder: Path, f1: float) -> None:
    """Give a checkpoint a recorded val F1@5 (what its training measured) for the rule to compare with."""
    from core.artifacts import read_json, write_json

    manifest = read_json(folder / "hashtag.json")
    manifest["val"]["f1@5"] = f1
    write_json(folder / "hashtag.json", manifest)


def _retrain(root: Path, store: FeedbackStore, tmp_path: Path, monkeypatch, messages: list) -> dict:
    from core.jobs.handlers import Progress, execute

    class Recorder(Progress):
        def __call__(self, fraction: float, message: str = "") -> None:
            messages.append((fraction, message))

    monkeypatch.setenv("RECS_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    params = {"dataset": str(root), "images_dir": str(store.images_dir), "config": {"epochs": 2, "batch_size": 4}}
    return execute("hashtag.jobs:retrain_job", params, Recorder(None, tmp_path / "scratch"))


def test_decide_serves_unless_worse():
    from hashtag.versions import decide

    assert decide(0.41, 0.43) == (False, "val F1@5 0.410 < serving 0.430")
    assert decide(0.45, 0.43) == (True, "val F1@5 0.450 ≥ serving 0.430")
    assert decide(0.4301, 0.4302)[0] is False and "0.4301 < serving 0.4302" in decide(0.4301, 0.4302)[1]
    assert decide(0.2, None)[0] is True


def test_a_worse_retrain_is_kept_not_served_and_a_better_one_is_served(tiny_model, store, tmp_path, monkeypatch):
    from core.artifacts import read_json
    from hashtag import service, versions

    service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="trip.zip", permission=ADMIN)
    _record_val(tiny_model / "model", 0.9)  # the serving version scored 0.9 on the validation split
    messages: list = []
    outcome = _retrain(tiny_model, store, tmp_path, monkeypatch, messages)["done"]
    assert outcome["served"] is False and outcome["reason"].endswith("< serving 0.900")
    assert versions.serving_version(tiny_model) == "v1"
    kept = versions.version_dir(tiny_model, outcome["version"])
    manifest = read_json(kept / "hashtag.json")["version"]
    assert manifest["id"] == outcome["version"] and manifest["created"] and manifest["dataset_checksum"]
    assert manifest["user_split"]["images"] == 2 and manifest["user_split"]["imports"] == [1]
    assert manifest["served"] is False and manifest["reason"] == outcome["reason"]
    assert not (kept / "last.pt").exists() and not any((tmp_path / "scratch").glob("v*"))
    assert any("epoch 2/2: val F1@5" in m for _, m in messages), messages  # progress per epoch with the metric
    rows = service.list_versions(tiny_model)
    assert [r["version"] for r in rows] == [outcome["version"], "v1"] and rows[1]["serving"]
    assert rows[0]["decision"] == outcome["reason"]

    _record_val(tiny_model / "model", -1.0)  # now the serving version is the weaker one
    better = _retrain(tiny_model, store, tmp_path, monkeypatch, [])["done"]
    assert better["served"] is True and "≥ serving -1.000" in better["reason"]
    assert versions.serving_version(tiny_model) == better["version"]
    assert service.serving_summary(tiny_model)["version"] == better["version"]
    with pytest.raises(versions.VersionError):
        service.switch_version(tiny_model, outcome["version"], permission=USER)
    service.switch_version(tiny_model, outcome["version"], permission=ADMIN)  # an admin may still
    assert versions.serving_version(tiny_model) == outcome["version"]


def test_the_tab_loads_the_served_version(tiny_model, store, tmp_path, monkeypatch):
    from hashtag import service

    before = service.checkpoint_version(tiny_model)
    service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="trip.zip", permission=ADMIN)
    new = _retrain(tiny_model, store, tmp_path, monkeypatch, [])["done"]
    assert new["served"] and service.checkpoint_version(tiny_model) != before
    loaded = service.HashtagService(tiny_model)
    assert loaded.version == new["version"] and "kitten" in loaded.manifest["vocab"]
    assert loaded.predict(CSV_DIR / "images" / "cat.png", method="model", k=3)

    from streamlit.testing.v1 import AppTest

    try:
        at = AppTest.from_function(_hashtag_tab, args=(str(tiny_model),), default_timeout=120).run()
        assert not at.exception
        captions = " ".join(str(c.value) for c in at.caption)
        assert f"Model version **{new['version']}**" in captions
        assert "trained on csv + 2 users' tagged photos (imports #1); val F1@5 0.000." in captions
    finally:
        service._HANDLES.release(str(Path(tiny_model).resolve()))  # the tmp model must not stay in the model cache


def _hashtag_tab(root: str) -> None:
    from ui import hashtag

    hashtag.render(root)


def test_the_pointer_survives_a_crash_mid_write(tiny_model, monkeypatch, caplog):
    import shutil

    from core import artifacts
    from hashtag import versions

    second = versions.version_dir(tiny_model, versions.new_version_id())
    shutil.copytree(tiny_model / "model", second, ignore=shutil.ignore_patterns("versions", "last.pt"))
    versions.set_serving(tiny_model, second.name, reason="test")

    def crash(*_args, **_kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(artifacts.os, "replace", crash)  # the process dies between writing and renaming
    with pytest.raises(OSError):
        versions.set_serving(tiny_model, "v1", reason="never lands")
    monkeypatch.undo()
    assert versions.serving_version(tiny_model) == second.name
    assert [p.name for p in (tiny_model / "model").glob("*serving*")] == ["serving.json"]  # no torn temp file
    (tiny_model / "model" / "serving.json").write_text('{"version": "v2026')  # torn by something else
    assert versions.serving_version(tiny_model) == "v1" and "unreadable pointer" in caplog.text
    with pytest.raises(versions.VersionError, match="no complete checkpoint"):
        versions.set_serving(tiny_model, "v20990101-000000-abcd", reason="dangling")


def test_a_retrain_without_a_dataset_fails_with_one_sentence(tmp_path, store, monkeypatch):
    from core.jobs.handlers import Progress, execute

    monkeypatch.setenv("RECS_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    outcome = execute("hashtag.jobs:retrain_job", {"dataset": str(tmp_path / "none")}, Progress(None, tmp_path / "s"))
    assert "No hashtag dataset at" in outcome["failed"] and "\n" not in outcome["failed"]


def test_queue_retrain_needs_permission_and_does_not_stack(tmp_path, store, monkeypatch):
    from core.jobs import JobQueue
    from hashtag import service

    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)
    queue = JobQueue(store.engine.url.render_as_string(hide_password=False))
    with pytest.raises(ValueError, match="Only administrators"):
        service.queue_retrain(tmp_path, store=store, permission=USER, queue=queue)
    first = service.queue_retrain(tmp_path, store=store, permission=ADMIN, owner="ann", queue=queue)
    assert service.queue_retrain(tmp_path, store=store, permission=ADMIN, queue=queue) == first
    job = queue.get(first)
    assert job.handler == "hashtag.jobs:retrain_job" and job.params["images_dir"] == str(store.images_dir)
    assert [j.id for j in service.retrain_jobs(queue=queue)] == [first]


def test_cli_imports_retrains_and_lists_versions(tiny_model, tmp_path, monkeypatch, capsys):
    import json

    import core.feedback.store
    from hashtag.__main__ import main

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr(core.feedback.store, "DATA_DIR", tmp_path / "data")  # stored photos: not the repo's data/
    bad, good = tmp_path / "bad.zip", tmp_path / "good.zip"
    bad.write_bytes(csv_zip("image,hashtags\ncat.png,cat\ngone.png,x\n", ("cat.png",)))
    good.write_bytes(csv_zip(GOOD_CSV))
    try:
        assert main(["import-photos", str(bad), "--profile", "cli"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: 1 of 2 photos listed in tags.csv are not in the zip (gone.png); add them or remove "
                       "their rows."]
        assert main(["import-photos", str(good), "--profile", "cli", "--accept", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["photos"], report["review"]) == (2, "accepted")
        assert main(["retrain", "--dataset", str(tiny_model), "--epochs", "1", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["user_photos"] == 2 and result["imports"] == [report["batch"]]
        assert main(["versions", "--dataset", str(tiny_model), "--serve", "v1", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["version"] for r in rows if r["serving"]] == ["v1"] and len(rows) == 2
        assert main(["versions", "--dataset", str(tiny_model), "--serve", "v9"]) == 2
        assert capsys.readouterr().err.strip() == "error: 'v9' is not a model version id."
    finally:
        close_engine(url)


# ----------------------------------------------------------------------------------------------
# the Data page's section


def _photos_section() -> None:
    from ui import data_photos

    data_photos.render()


@pytest.mark.slow(reason="AppTest of the Data page over a trained model (~10 s)")
def test_data_page_shows_imports_jobs_and_why_a_version_is_not_served(tiny_model, store, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue
    from hashtag import service, versions
    from ui import data_photos
    from ui import profile as profiles

    url = store.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr(profiles, "store", lambda: store)
    monkeypatch.setattr(profiles, "heavy_permission", lambda: ADMIN)
    monkeypatch.setattr(data_photos, "_dataset_root", lambda: str(tiny_model))
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)  # no worker process in a test
    report = service.import_photos(store, "ann", csv_zip(GOOD_CSV), label="trip.zip", permission=ADMIN)
    _record_val(tiny_model / "model", 0.9)
    kept = _retrain(tiny_model, store, tmp_path, monkeypatch, [])["done"]
    pending = service.import_photos(store, "bob", csv_zip(GOOD_CSV), label="bobs.zip", permission=USER)
    queue = JobQueue(url)
    running = queue.submit("hashtag.retrain", "hashtag.jobs:retrain_job", "Retrain the hashtag model with imported "
                           "photos", {"dataset": str(tiny_model)})
    queue.claim("test-worker")
    queue.report(running, 0.5, "epoch 4/8: val F1@5 0.412")

    at = AppTest.from_function(_photos_section, default_timeout=60)
    at.session_state[data_photos.REPORT] = {"name": "trip.zip", "report": report, "job": running}
    at.run()
    assert not at.exception
    texts = " ".join(str(e.value) for e in [*at.success, *at.info, *at.warning])
    assert "Imported 2 photos from trip.zip" in texts and "1 no usable hashtag" in texts
    assert f"The newest version {kept['version']} is not served (still v1): val F1@5 0.000 < serving 0.900" in texts
    bars = [str(p.proto.text).replace("\\", "") for p in at.get("progress")]  # shown as Markdown, escaped
    assert any("epoch 4/8: val F1@5 0.412" in b for b in bars), bars
    imports, table = at.dataframe[0].value, at.dataframe[1].value
    assert list(imports["import"]) == [f"#{pending['batch']}", f"#{report['batch']}"]
    assert list(imports["accepted"]) == [0, 2] and list(imports["pending"]) == [2, 0]
    assert list(table["version"]) == [kept["version"], "v1"] and list(table["serving"]) == ["", "✓"]

    at.selectbox(key="photos_version_pick").select(kept["version"]).run()
    at.button(key="photos_serve").click().run()
    assert not at.exception and versions.serving_version(tiny_model) == kept["version"]
    at.selectbox(key="photos_pick").select(pending["batch"]).run()
    at.button(key="photos_accept").click().run()  # an administrator accepts bob's whole import
    assert not at.exception and {r.review for r in store.tagged_images("bob")} == {"accepted"}
    successes = " ".join(str(s.value) for s in at.success)
    assert f"Import #{pending['batch']}: 2 photos accepted. Retrain #" in successes
    assert [j.status for j in service.retrain_jobs(queue=queue)] == ["queued", "running"]
    at.button(key="photos_remove").click().run()
    assert [b.id for b in store.import_batches()] == [report["batch"]] and store.tagged_images("bob") == []
    assert f"Removed import #{pending['batch']} (2 photos)." in " ".join(str(s.value) for s in at.success)


def test_the_import_job_stores_an_admins_photos_and_queues_a_retrain(tiny_model, store, tmp_path, monkeypatch):
    """What the Data page does: the zip is kept and queued, a job (run here in-process) stores the photos as one
    import; an administrator's is accepted and queues a retrain, a bad zip fails in one sentence storing nothing;
    the kept upload is deleted either way, and only its owner sees the import job."""
    from core.jobs import JobQueue
    from core.jobs.handlers import Progress, execute
    from core.jobs.uploads import uploads_dir
    from hashtag import service

    url = store.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)
    queue = JobQueue(url)
    bad = service.queue_import("bob", b"not a zip", label="broken.zip", permission=USER, dataset_root=tiny_model,
                               images_dir=store.images_dir, queue=queue)
    failed = execute(service.IMPORT_HANDLER, queue.get(bad).params, Progress(None, tmp_path / "s"))
    assert "failed" in failed and nothing_stored(store)
    good = service.queue_import("ann", csv_zip(GOOD_CSV), label="trip.zip", permission=ADMIN,
                                dataset_root=tiny_model, images_dir=store.images_dir, queue=queue)
    assert [j.id for j in service.import_jobs("ann", queue=queue)] == [good] and service.import_jobs("x", queue=queue) == []
    done = execute(service.IMPORT_HANDLER, queue.get(good).params, Progress(None, tmp_path / "s"))["done"]
    assert done["photos"] == 2 and done["review"] == "accepted"
    assert queue.get(done["retrain_job"]).kind == "hashtag.retrain"
    assert [t.review for t in store.tagged_images("ann")] == ["accepted", "accepted"]
    assert all(Path(t.path).parent == store.images_dir and Path(t.path).is_file() for t in store.tagged_images("ann"))
    assert not list(uploads_dir().glob("*.zip"))
