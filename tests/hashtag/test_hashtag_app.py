"""The Hashtags tab end to end: a tiny model trained in the session's temp models folder, the CLI
(predict / evaluate / bad input), the Streamlit tab through AppTest, and one real-browser run.

The tiny model (≈115 Tux Paint images: mammals and fruit; a few epochs) is for behaviour, not
quality: the assertions are about shapes, rules and messages, plus one on-topic check that the
most-frequent baseline fails: a real cat photo the model has never seen gets #animal/#mammal, and held-out
fruit pictures do not lead with them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.paths import FIXTURES

pytestmark = pytest.mark.slow(reason="nearly every test needs a hashtag model trained for the session")

ROOT = Path(__file__).resolve().parents[2]
ON_TOPIC = {"animal", "mammal", "cat", "kitten", "tiger"}


@pytest.fixture(scope="session")
def hashtag_model(models_dir):
    """Build a small Tux Paint dataset at the default location of the temp models folder and train on it."""
    import torch

    src = ROOT / "models" / "encoders"  # reuse the ONNX export if this checkout has one (saves ~30 s)
    if src.is_dir():
        (models_dir / "encoders").mkdir(exist_ok=True)
        for f in src.glob("*-s224-*"):
            if not (models_dir / "encoders" / f.name).exists():
                shutil.copy2(f, models_dir / "encoders" / f.name)
    from hashtag import data
    from hashtag.service import HashtagService
    from hashtag.train import TrainConfig, train

    assert str(data.DEFAULT_DATASET).startswith(str(models_dir))
    keep = ("animals/mammals", "food/fruit")
    examples = [e for e in data.tuxpaint_examples() if e.id.startswith(keep)]
    ds = data.build_dataset(examples, data.DEFAULT_DATASET)
    manifest = train(data.DEFAULT_DATASET, TrainConfig(epochs=5, batch_size=32, lr=2e-3, flips=False, patience=5,
                                                       max_minutes=3), evaluate_after=False)
    torch.set_num_threads(1)
    import core.metrics

    core.metrics.RESULTS_DIR = models_dir / "results"  # `evaluate --json` writes its result file: not the repo's
    from hashtag.__main__ import main

    buf = io.StringIO()  # the CLI's `evaluate --json`: stdout must be exactly one JSON object
    with contextlib.redirect_stdout(buf):
        assert main(["evaluate", "--json"]) == 0
    table = json.loads(buf.getvalue())
    return {"dataset": ds, "manifest": manifest, "service": HashtagService(data.DEFAULT_DATASET), "table": table,
            "results_dir": core.metrics.RESULTS_DIR}


@pytest.fixture(scope="session")
def chelsea_png(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data as skdata

    path = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    return path


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RECS_NO_TQDM="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "hashtag", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=180)


# ----------------------------------------------------------------------------------------------
# training + service


def test_training_writes_a_checkpoint_that_a_second_run_reuses(hashtag_model, models_dir):
    from hashtag.data import DEFAULT_DATASET
    from hashtag.train import TrainConfig, model_dir, train

    folder = model_dir(DEFAULT_DATASET)
    assert (folder / "hashtag.safetensors").is_file() and (folder / "last.pt").is_file()
    m = hashtag_model["manifest"]
    assert m["status"] == "done" and m["kind"] == "hashtag-decoder"
    assert len(m["history"]) >= 1 and all("val_f1@5" in h for h in m["history"])
    again = train(DEFAULT_DATASET, TrainConfig(epochs=5, batch_size=32, lr=2e-3, flips=False, patience=5,
                                               max_minutes=3))
    assert again["key"] == m["key"] and again["train_seconds"] == m["train_seconds"]  # skipped, not retrained


def test_evaluate_json_reports_all_methods_and_metrics(hashtag_model):
    from hashtag.service import EVALUATED

    table = hashtag_model["table"]
    assert set(table) - {"real_photos_check"} == set(EVALUATED) | {"real_photos"}
    assert set(table["real_photos"]) == set(EVALUATED) | {"ceiling"}
    if "real_photos_check" in table:  # the held-out object photos (Debian opencv-doc) when installed
        check = table["real_photos_check"]
        assert set(check) == set(EVALUATED) | {"ceiling", "per_photo"}
        assert check["fused"]["images"] >= 12 and len(check["per_photo"]) == check["fused"]["images"]
        assert all(len(r["fused"]) == 5 and {s for _, s in r["fused"]} <= {"learned", "concept", "both"}
                   for r in check["per_photo"])
    for group in ("real_photos", "real_photos_check"):
        if group in table:  # no ranking of the candidates beats a perfect one: the ceiling bounds the fused list
            ceiling = table[group]["ceiling"]["precision@5_acceptable"]
            assert table[group]["fused"]["precision@5_acceptable"] <= ceiling <= 1.0
    for row in ([table[m] for m in EVALUATED] + [table["real_photos"][m] for m in EVALUATED]
                + [table["real_photos_check"][m] for m in EVALUATED if "real_photos_check" in table]):
        for k in (1, 3, 5):
            for name in ("precision", "recall", "f1"):
                assert 0.0 <= row[f"{name}@{k}"] <= 1.0
        assert all(f"bleu{n}" in row for n in (1, 2, 3, 4))
        for name in ("precision@5", "recall@5", "f1@5", "hit@1"):
            lo, hi = row["ci95"][name]
            assert lo <= row[name] <= hi
    assert table["model"]["images"] == table["knn"]["images"] > 0
    assert table["real_photos"]["fused"]["images"] >= 40 and table["real_photos"]["fused"]["small_set"]
    assert (ROOT / "bench").is_dir() and (hashtag_model["results_dir"] / "hashtag_evaluate.json").is_file()


def test_predict_scores_ranked_without_repeats_and_attention_maps(hashtag_model, chelsea_png):
    service = hashtag_model["service"]
    results = service.predict(chelsea_png, k=5)
    tags = [r.tag for r in results]
    assert 1 <= len(tags) <= 5 and len(set(tags)) == len(tags)
    # fused lists are in a person's order on a photo: no general word (#animal) before a specific one
    from hashtag.order import GENERAL_WORDS

    general = [t in GENERAL_WORDS for t in tags]
    assert general == sorted(general), tags
    learned = service.predict(chelsea_png, method="model", k=5)
    assert [r.score for r in learned] == sorted((r.score for r in learned), reverse=True)
    assert all(r.attention is not None and r.attention.shape == (7, 7) for r in results)
    for method in ("knn", "most_frequent"):
        base = service.predict(chelsea_png, method=method, k=3)
        assert len(base) == 3 and base[0].attention is None


def test_photo_gate_tells_training_pictures_from_real_photos(hashtag_model, chelsea_png):
    """The model's photo gate is saved beside it with a manifest; held-out clip art scores above the fusion
    threshold and real photos (cross-fitted, never scored by a gate that saw them) below it, so on the cat
    photo no decoder-only tag reaches the fused list."""
    import numpy as np

    from hashtag.concepts import FUSION
    from hashtag.model import model_dir

    service = hashtag_model["service"]
    gate = service.gate()
    assert gate is not None and len(gate.photos) >= 10
    folder = model_dir(hashtag_model["dataset"].root)
    manifest = json.loads((folder / "photo_gate.json").read_text())
    assert manifest["kind"] == "hashtag-photo-gate" and manifest["key"] == gate.key
    assert (folder / "photo_gate.npz").is_file()
    ex = service.dataset.examples
    val = [i for i, e in enumerate(ex) if e.split in ("val", "test")]
    clip_art = service.likeness(service.baselines()["grids"][val])
    photos, _, _ = service.real_photo_grids("dev")
    real = service.dev_likeness(photos)
    assert np.median(clip_art) >= FUSION.threshold > np.median(real)
    assert service.fusion_rule() == FUSION
    sources = {r.source for r in service.predict(chelsea_png, k=5)}
    assert sources <= {"concept", "both"}, sources


def test_tags_follow_the_picture_where_most_frequent_cannot(hashtag_model, chelsea_png):
    """An unseen cat photo gets an animal tag, and held-out fruit pictures do not lead with one.

    Mammals are 60 % of the toy data, so "animal" first for every picture would pass the cat half alone: the
    most-frequent baseline does exactly that, and the test checks that it fails the fruit half.
    """
    service = hashtag_model["service"]
    tags = [r.tag for r in service.predict(chelsea_png, k=5)]
    assert ON_TOPIC & set(tags), tags
    held_out_fruit = [e.image for e in hashtag_model["dataset"].examples
                      if e.split != "train" and e.id.startswith("food/fruit") and e.image.endswith(".png")]
    assert len(held_out_fruit) >= 3

    def animal_first(method: str) -> float:
        firsts = [service.predict(path, method=method, k=1)[0].tag for path in held_out_fruit]
        return sum(t in ON_TOPIC for t in firsts) / len(firsts)

    assert animal_first("model") <= 0.25, "the model leads with an animal tag on fruit pictures"
    assert animal_first("most_frequent") == 1.0  # the baseline this test is built to reject


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_predict_json(hashtag_model, chelsea_png, capsys):
    from hashtag.__main__ import main

    assert main(["predict", str(chelsea_png), "--json", "--top-k", "3", "--beam", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 1 <= len(out["hashtags"]) <= 3
    assert all(set(h) == {"tag", "score", "source"} for h in out["hashtags"])
    assert {h["source"] for h in out["hashtags"]} <= {"learned", "concept", "both"}
    assert out["picture"]["is_photo"] and out["picture"]["decoder_weight"] == 0.0  # the gate's verdict, explained


def test_cli_predict_folder_one_json_line_per_photo_and_errors_go_on(hashtag_model, chelsea_png, tmp_path, capsys):
    from PIL import Image
    from skimage import data as skdata

    from hashtag.__main__ import main

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(chelsea_png, folder / "cat.png")
    Image.fromarray(skdata.coffee()).save(folder / "sub" / "coffee.jpg")
    (folder / "broken.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("ignored: not an image file name")
    assert main(["predict", str(folder), str(chelsea_png), "--json", "--top-k", "4"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(o["path"]).name for o in lines] == ["broken.jpg", "cat.png", "coffee.jpg", "chelsea.png"]
    broken, *good = lines
    assert broken["error"] and "hashtags" not in broken
    for o in good:
        assert 1 <= len(o["hashtags"]) <= 4 and all(set(h) == {"tag", "score", "source"} for h in o["hashtags"])
        assert "is_photo" in o["picture"]
    assert lines[1]["hashtags"] == lines[3]["hashtags"]  # the same photo twice: the same answer


def test_cli_predict_with_a_tiny_open_clip_model_offline(hashtag_model, chelsea_png, tmp_path, capsys, monkeypatch):
    """``--tagger clip`` end to end with a tiny random OpenCLIP model in a folder: nothing is downloaded."""
    pytest.importorskip("open_clip")
    import core.encoders

    monkeypatch.setattr(core.encoders, "ENCODER_CACHE", tmp_path / "cache")  # the vocabulary's text embeddings
    from test_hashtag_openvocab import save_tiny_clip

    from hashtag.__main__ import main
    from hashtag.openvocab import SOURCE

    model = save_tiny_clip(tmp_path / "tiny-clip")
    args = ["predict", str(chelsea_png), "--tagger", "clip", "--clip-model", str(model), "--json", "--top-k", "10"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    sources = {h["source"] for h in out["hashtags"]}
    assert any(SOURCE in src for src in sources), sources
    assert any(src.split("+")[0] in ("concept", "both") for src in sources), sources  # the concepts still take part
    assert list((tmp_path / "cache").glob("openvocab-*.npz"))  # the vocabulary's embeddings, cached for next time
    assert main(["predict", str(chelsea_png), "--tagger", "clip"]) == 2  # no --clip-model
    assert "--clip-model" in capsys.readouterr().err
    assert main(["predict", str(chelsea_png), "--tagger", "clip", "--clip-model", "ViT-B-32/laion2b_s34b_b79k"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--allow-download" in err


def test_fused_prediction_says_whether_the_picture_is_a_photo(hashtag_model, chelsea_png):
    """A real photo gets the concept-only sentence; a held-out stamp of the training corpus gets the decoder's share."""
    service = hashtag_model["service"]
    _, photo = service.predict_fused(chelsea_png)
    assert photo.is_photo and "real photo" in photo.sentence()
    stamps = [e for e in service.dataset.examples if e.split == "val"]
    from core.images import load_any

    verdicts = [service.predict_fused(load_any(e.image), k=5)[1] for e in stamps[:6]]
    clip_art = [v for v in verdicts if not v.is_photo]
    assert len(clip_art) >= 4 and all(v.decoder_weight > 0 and "learned tags weigh" in v.sentence() for v in clip_art)


def test_cli_predict_with_other_encoder_weights_says_retrain(hashtag_model, chelsea_png, tmp_path, capsys):
    """--weights reaches the encoder; weights the model was not trained with are refused, not silently mixed."""
    import torch

    from core.encoders import _lite_weights_path
    from hashtag.__main__ import main

    state = torch.load(_lite_weights_path(0), map_location="cpu", weights_only=True)
    first = next(iter(state))
    state[first] = state[first] * 1.01  # same shapes, different weights
    other = tmp_path / "other-lite0.pth"
    torch.save(state, other)
    assert main(["predict", str(chelsea_png), "--weights", str(other)]) == 2
    err = capsys.readouterr().err
    assert "trained with encoder" in err and "--force" in err, err


def test_evaluate_json_is_saved_for_the_app(hashtag_model):
    from hashtag.service import saved_evaluation

    from hashtag.service import EVALUATED

    saved = saved_evaluation()
    table = hashtag_model["table"]
    assert saved and saved["results"] == {m: table[m] for m in EVALUATED} and saved["info"]["split"] == "test"
    assert saved["real_photos"] == table["real_photos"]
    assert saved["real_photos_check"] == table.get("real_photos_check")


def test_cli_bad_input_one_line_no_traceback(hashtag_model, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    from hashtag.__main__ import main

    assert main(["predict", str(tmp_path / "missing.jpg")]) == 2
    assert main(["predict", str(not_image)]) == 2
    proc = _cli("predict", str(not_image), "--json")  # the real process: exit code, stderr, empty stdout
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_cli_without_trained_model_says_how_to_train(tmp_path, capsys):
    from hashtag.__main__ import main

    assert main(["evaluate", "--dataset", str(tmp_path / "nothing")]) == 2
    assert "python -m hashtag build-dataset" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# the Streamlit tab


def _tab_app(dataset_root: str | None = None) -> None:
    import ui.hashtag

    ui.hashtag.render(dataset_root)


def test_tab_upload_shows_hashtags_line_and_heatmaps(hashtag_model, chelsea_png):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab_app, default_timeout=120)
    at.run()
    assert not at.exception
    assert "About this model" in [e.label for e in at.expander]  # the card: test F1@5 with its interval
    assert any("fused f1\\@5" in m.value and "95 % interval" in m.value for m in at.markdown)  # @ escaped
    at.file_uploader(key="hashtag_upload").set_value(("chelsea.png", chelsea_png.read_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    line = at.code[0].value
    assert line.startswith("#") and len(line.split()) == 5
    assert any(f"`{line.split()[0]}`" in m.value for m in at.markdown)  # the chips
    assert any("· concept ·" in m.value or "· decoder + concept ·" in m.value for m in at.markdown)  # with source
    assert len(at.image) >= 2  # the photo and at least one attention map
    assert any("1,000 ImageNet concepts" in c.value and "people" in c.value for c in at.caption)
    assert any(c.value.startswith("Looks like a real photo") for c in at.caption)  # why no learned tags


def test_tab_tags_several_uploads_at_once_and_a_bad_one_gets_its_own_row(hashtag_model, chelsea_png):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab_app, default_timeout=180)
    at.run()
    at.file_uploader(key="hashtag_batch").set_value([("cat.png", chelsea_png.read_bytes(), "image/png"),
                                                     ("fake.png", b"not an image at all", "image/png")]).run()
    assert not at.exception
    rows = at.dataframe[0].value.to_dict("records")
    assert [r["photo"] for r in rows] == ["cat.png", "fake.png"]
    assert rows[0]["hashtags"].startswith("#") and not rows[0]["error"] and rows[0]["verdict"] == "photo"
    assert rows[1]["error"] and not rows[1]["hashtags"]


def test_tab_open_vocabulary_setting_without_weights_says_so(hashtag_model):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab_app, default_timeout=120)
    at.run()
    at.selectbox(key="hashtag_tagger").set_value("clip").run()
    at.text_input(key="hashtag_clip_model").input("ViT-B-32/laion2b_s34b_b79k").run()
    assert not at.exception
    assert any("--allow-download" in e.value or "download" in e.value for e in at.error)


def test_tab_bad_file_shows_a_message(hashtag_model):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab_app, default_timeout=120)
    at.run()
    at.file_uploader(key="hashtag_upload").set_value(("fake.png", b"not an image at all", "image/png")).run()
    assert not at.exception
    assert at.error and "Could not use that file" in at.error[0].value
    assert not at.code


def test_tab_without_model_says_how_to_train(tmp_path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_tab_app, kwargs={"dataset_root": str(tmp_path / "none")}, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("python -m hashtag train" in i.value for i in at.info)
    assert at.button(key="hashtag_train")


def test_attention_overlay_and_line():
    import numpy as np
    from PIL import Image

    from ui.hashtag import attention_overlay, hashtag_line

    out = attention_overlay(Image.new("RGB", (300, 200), "white"), np.eye(7))
    assert out.size == (224, 224) and out.mode == "RGB"
    assert hashtag_line(["cat", "animal"]) == "#cat #animal"


@pytest.mark.browser
def test_browser_upload_cat_gets_hashtags(hashtag_model, chelsea_png, browser_page, wait_images, artifacts_dir):
    page = browser_page
    page.get_by_role("tab", name="Hashtags").click()
    page.locator('input[type="file"]').first.set_input_files(str(chelsea_png))
    code = page.locator('[data-testid="stCode"]').first
    code.wait_for()
    line = code.inner_text().strip()
    assert line.startswith("#"), line
    wait_images(page, 2)  # the photo and at least one attention map
    page.screenshot(path=str(artifacts_dir / "hashtag-tab.png"), full_page=True)
    assert set(t.lstrip("#") for t in line.split()) & ON_TOPIC, line
    # at least one concept chip, and its class activation map rendered as an image with that caption
    assert page.get_by_text("· concept ·").count() + page.get_by_text("· decoder + concept ·").count() >= 1
    page.get_by_text("class activation map").first.wait_for()


def test_csv_dataset_trains_predicts_and_evaluates_end_to_end(hashtag_model, tmp_path):
    """A user's own ``image,hashtags`` CSV goes through the same pipeline; 3 images leave a split empty."""
    from hashtag import data
    from hashtag.service import HashtagService
    from hashtag.train import TrainConfig, train

    fixture = FIXTURES / "hashtag" / "csv"
    ds = data.build_dataset(data.csv_examples(fixture / "hashtags.csv"), tmp_path / "csv", name="csv")
    manifest = train(ds.root, TrainConfig(epochs=2, batch_size=4, flips=False))
    assert manifest["status"] == "done"
    service = HashtagService(ds.root)
    tags = [r.tag for r in service.predict(fixture / "images" / "cat.png", method="model", k=3)]
    assert tags and set(tags) <= {"cat", "animal", "pet", "beach", "sea", "summer", "tree", "nature"}
    table = service.evaluate(photo_set=None, check_set=None)
    from hashtag.service import EVALUATED

    assert set(table) == set(EVALUATED)


def test_train_now_queues_a_job_instead_of_training_in_the_page(tmp_path, monkeypatch):
    """Training is heavy work: the button queues it for a worker process and says where to follow it."""
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)  # no worker process in a test
    at = AppTest.from_function(_tab_app, kwargs={"dataset_root": str(tmp_path / "none")}, default_timeout=60)
    at.run()
    at.button(key="hashtag_train").click().run()
    assert not at.exception
    jobs = JobQueue(url).list()
    assert [j.kind for j in jobs] == ["hashtag.retrain"] and jobs[0].status == "queued"
    assert any(f"job #{jobs[0].id}" in s.value for s in at.success)
