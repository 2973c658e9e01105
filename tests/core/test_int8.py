"""int8 encoding: chosen by the CPU or forced by one setting, built once with a manifest, and still sees a cat."""

from __future__ import annotations

import csv
import json
from pathlib import PurePosixPath

import numpy as np
import pytest
from PIL import Image
from skimage import data

import core.encoders as encoders
from core import int8
from core.artifacts import read_json
from bench import encoders as bench_encoders
from core.encoders import ImageEncoder, get_image_encoder
from core.photo_archives import is_archive_spec, parse_spec
from core.photosets import resolve_photo


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_vnni amx_int8\n\nprocessor\t: 1\n")
    assert {"avx512_vnni", "amx_int8", "fpu"} <= int8.cpu_flags(info)
    assert int8.cpu_flags(tmp_path / "absent") == set()


def test_precision_setting_forces_either_way(monkeypatch):
    monkeypatch.setattr(int8, "int8_flags", lambda: ("avx512_vnni",))
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "fp32")
    assert int8.resolve_precision() == "fp32"
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "int8")
    assert int8.resolve_precision() == "int8"
    monkeypatch.setattr(int8, "int8_flags", lambda: ())
    assert int8.resolve_precision() == "int8"  # forced even without VNNI
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "int4")
    with pytest.raises(ValueError, match="int8, fp32, auto"):
        int8.resolve_precision()


@pytest.mark.slow(reason="quantizes and measures an encoder")
def test_unset_precision_is_fp32_until_int8_meets_its_accuracy_bar(monkeypatch):
    monkeypatch.delenv("RECS_ENCODER_PRECISION", raising=False)
    monkeypatch.setattr(int8, "int8_flags", lambda: ("avx512_vnni",))
    assert int8.resolve_precision() == "fp32" and get_image_encoder(input_size=64).precision == "fp32"


def test_auto_falls_back_to_fp32_without_vnni(monkeypatch):
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "auto")
    monkeypatch.setattr(int8, "int8_flags", lambda: ())
    enc = get_image_encoder(input_size=64)
    assert enc.precision == "fp32" and enc.spec["precision"] == "fp32" and "cpu_int8" not in enc.spec
    monkeypatch.setattr(int8, "int8_flags", lambda: ("avx512_vnni",))
    enc = get_image_encoder(input_size=64)
    assert enc.precision == "int8" and enc.spec["cpu_int8"] == ["avx512_vnni"]
    assert ImageEncoder(input_size=64, runtime="torch").precision == "fp32"  # eager runtimes have no int8 graph


@pytest.mark.slow(reason="quantizes an encoder")
def test_calibration_uses_real_images_never_the_check_photos():
    sources = int8.calibration_sources()
    assert len(sources) == int8.CALIBRATION_IMAGES
    assert not any("opencv-doc" in s or "skimage" in s for s in sources)
    photos = [s for s in sources if "tuxpaint" not in s]
    assert len(photos) == int8.CALIBRATION_IMAGES - int8.CALIBRATION_CLIPART  # mostly photos, some clip art
    assert len(set(sources)) == len(sources)
    whole = int8.load_calibration_image(photos[0])
    crop = int8.load_calibration_image(photos[-1])
    assert whole.mode == crop.mode == "RGB" and min(whole.size) > 100
    if "#crop" in photos[-1]:  # fewer photos than the photo share: filled with seeded crops, the same every time
        again = int8.load_calibration_image(photos[-1])
        assert crop.size == again.size and np.array_equal(np.asarray(crop), np.asarray(again))


@pytest.mark.slow(reason="quantizes an encoder")
def test_int8_graph_is_built_once_with_a_manifest(monkeypatch, tmp_path):
    monkeypatch.setattr(encoders, "ENCODER_CACHE", tmp_path)
    monkeypatch.setattr(int8, "CALIBRATION_IMAGES", 12)
    monkeypatch.setattr(int8, "CALIBRATION_CLIPART", 4)
    enc = ImageEncoder(input_size=64, precision="int8")
    x = np.stack([enc.preprocess(Image.fromarray(data.coffee()))])
    grid = enc.grid_batch(x)
    assert grid.shape == (1, 1280, 2, 2)
    graphs = sorted(p.name for p in tmp_path.glob("*-int8.onnx"))
    assert len(graphs) == 1 and graphs[0].endswith("-s64-b1-int8.onnx")
    manifest = read_json(tmp_path / graphs[0].replace(".onnx", ".json"))
    assert manifest["kind"] == "onnx-encoder-int8" and manifest["calibration"]["images"] == 12
    assert manifest["quantization"]["per_channel"] and manifest["quantization"]["format"] == "QDQ"
    assert manifest["bytes"]["int8"] < manifest["bytes"]["fp32"] / 2
    assert {"onnxruntime", "cpu_int8_flags", "recipe"} <= set(manifest)
    fp32 = ImageEncoder(input_size=64, precision="fp32").grid_batch(x)
    cosine = float((grid.max(axis=(2, 3)) @ fp32.max(axis=(2, 3)).T).item()
                   / np.linalg.norm(grid.max(axis=(2, 3))) / np.linalg.norm(fp32.max(axis=(2, 3))))
    assert cosine > 0.95, cosine  # a quantized copy of the same network, not another one

    def refuse(*args, **kwargs):
        raise AssertionError("a fresh int8 graph was quantized again")

    monkeypatch.setattr(int8, "quantize_encoder", refuse)
    again = ImageEncoder(input_size=64, precision="int8").grid_batch(x)
    assert np.array_equal(again, grid)


def test_int8_still_sees_a_cat_and_an_espresso():
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    fp32 = get_image_encoder(precision="fp32").classify(photos, top=5)
    q8 = get_image_encoder(precision="int8").classify(photos, top=5)
    assert [r[0][0] for r in q8] == [r[0][0] for r in fp32]
    assert q8[1][0][0] == "espresso"


def test_openvino_engine_runs_the_same_int8_graph(monkeypatch):
    pytest.importorskip("openvino", reason="the OpenVINO engine is optional (requirements.txt pins it; int8 falls back to ONNX Runtime without it)")
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    ort_vecs = ImageEncoder(precision="int8").encode(photos)
    monkeypatch.setenv("RECS_INT8_ENGINE", "openvino")
    enc = ImageEncoder(precision="int8")
    assert enc.spec["int8_engine"] == "openvino"
    assert isinstance(enc._onnx_session(1), int8.OpenVINOSession)
    ov_vecs = enc.encode(photos)
    assert (np.sum(ort_vecs * ov_vecs, axis=1) > 0.99).all()
    assert enc.classify(photos[1:], top=1)[0][0][0] == "espresso"
    monkeypatch.setenv("RECS_INT8_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="onnxruntime, openvino"):
        ImageEncoder(precision="int8")


def test_spark_executors_get_the_drivers_precision_and_engine(monkeypatch):
    from core.spark.encode import encoder_spec

    monkeypatch.setenv("RECS_ENCODER_PRECISION", "fp32")
    assert encoder_spec()["precision"] == "fp32"
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "int8")
    assert encoder_spec()["precision"] == "int8"
    assert encoder_spec(runtime="torch")["precision"] == "fp32"
    # and its int8 engine: an executor must not run ONNX Runtime where the driver ran OpenVINO (vectors would mix)
    monkeypatch.setenv("RECS_INT8_ENGINE", "onnxruntime")
    assert encoder_spec()["int8_engine"] == "onnxruntime"
    monkeypatch.setenv("RECS_ENCODER_PRECISION", "fp32")
    assert encoder_spec()["int8_engine"] is None


def test_int8_engine_is_openvino_where_installed_else_onnxruntime(monkeypatch):
    monkeypatch.delenv("RECS_INT8_ENGINE", raising=False)
    monkeypatch.setattr(int8, "openvino_available", lambda: True)
    assert int8.int8_engine() == "openvino"
    monkeypatch.setattr(int8, "openvino_available", lambda: False)
    assert int8.int8_engine() == "onnxruntime"  # the app still runs int8 without the optional package
    monkeypatch.setenv("RECS_INT8_ENGINE", "onnxruntime")
    monkeypatch.setattr(int8, "openvino_available", lambda: True)
    assert int8.int8_engine() == "onnxruntime"  # forced
    assert int8.int8_engine("openvino") == "openvino"


def test_vectors_of_different_precision_or_engine_never_share_a_spec(monkeypatch):
    monkeypatch.setattr(int8, "int8_flags", lambda: ("avx512_vnni",))
    specs = [ImageEncoder(input_size=64, precision="fp32").spec,
             ImageEncoder(input_size=64, precision="int8", int8_engine="onnxruntime").spec]
    if int8.openvino_available():
        specs.append(ImageEncoder(input_size=64, precision="int8", int8_engine="openvino").spec)
    assert len({json.dumps(s, sort_keys=True) for s in specs}) == len(specs)
    assert specs[1]["cpu_int8"] == ["avx512_vnni"] and specs[1]["int8_engine"] == "onnxruntime"


#: The evaluation list's size today (distinct real photos from Debian and PyPI packages); it only grows.
EVALUATION_PHOTOS = 500


def _evaluation_rows() -> list[dict[str, str]]:
    with open(int8.EVALUATION_SET, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _installed_path(path: str) -> str:
    """Where a listed photo lands when its package is installed (a ``deb:`` member under ``/``), else the path."""
    if not is_archive_spec(path):
        return path
    kind, _, member = parse_spec(path)
    return "/" + member.partition("!")[0] if kind == "deb" else path


def test_evaluation_list_is_distinct_and_never_calibrated_or_chosen_on():
    rows = _evaluation_rows()
    listed = int8.evaluation_paths()
    assert len(rows) >= EVALUATION_PHOTOS and len(listed) == len(rows)  # no row twice
    assert all(row["package"] and row["path"] for row in rows)
    calibrated = {s.partition("#crop")[0] for s in int8.calibration_sources()}
    assert not calibrated & listed
    # a listed .deb photo is never calibrated on either where that package happens to be installed
    assert not calibrated & {_installed_path(p) for p in listed}
    dev = {name for name, _ in bench_encoders.dev_photos()}
    assert dev and not any(f"opencv-doc:{PurePosixPath(p).name}" in dev for p in listed if "opencv-doc" in p)
    assert not any(f"skimage:{PurePosixPath(p).stem}" in dev for p in listed if p.startswith("skimage/"))


@pytest.mark.slow(reason="copies 500 photos out of their package files and decodes each")
def test_every_evaluation_photo_loads_as_an_rgb_image_of_64_px_or_more():
    rows = _evaluation_rows()
    absent = sorted({row["package"] for row in rows if resolve_photo(row["package"], row["path"]) is None})
    if absent:
        pytest.skip(f"packages not downloaded here (make heldout-photos): {', '.join(absent)}")
    for row in rows:
        with Image.open(resolve_photo(row["package"], row["path"])) as img:
            rgb = img.convert("RGB")
        assert rgb.mode == "RGB" and min(rgb.size) >= 64, row["path"]


@pytest.mark.slow(reason="quantizes an encoder and converts it for OpenVINO")
def test_openvino_graph_is_cached_with_a_manifest(monkeypatch, tmp_path):
    pytest.importorskip("openvino", reason="the OpenVINO engine needs the openvino package")
    monkeypatch.setattr(encoders, "ENCODER_CACHE", tmp_path)
    monkeypatch.setattr(int8, "CALIBRATION_IMAGES", 12)
    monkeypatch.setattr(int8, "CALIBRATION_CLIPART", 4)
    enc = ImageEncoder(input_size=64, precision="int8", int8_engine="openvino")
    photo = np.stack([enc.preprocess(Image.fromarray(data.chelsea()))])
    vec = enc.grid_batch(photo).max(axis=(2, 3))
    xml = sorted(tmp_path.glob("*-int8-openvino.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".bin").is_file()
    manifest = read_json(xml[0].with_suffix(".json"))
    assert manifest["kind"] == "openvino-encoder-int8" and manifest["source_graph"].endswith("-int8.onnx")
    assert {"openvino", "cpu_int8_flags", "source"} <= set(manifest)

    def refuse(*args, **kwargs):
        raise AssertionError("a fresh OpenVINO graph was converted again")

    monkeypatch.setattr(int8, "convert_to_openvino", refuse)
    again = ImageEncoder(input_size=64, precision="int8", int8_engine="openvino").grid_batch(photo).max(axis=(2, 3))
    assert np.array_equal(again, vec)
    ort = ImageEncoder(input_size=64, precision="int8", int8_engine="onnxruntime").grid_batch(photo).max(axis=(2, 3))
    cosine = float((vec @ ort.T).item() / np.linalg.norm(vec) / np.linalg.norm(ort))
    assert cosine > 0.99, cosine  # the same int8 graph, another engine


@pytest.mark.slow(reason="quantizes an encoder")
def test_forced_openvino_without_the_package_says_what_to_do(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # an import of it now fails
    monkeypatch.setattr(int8, "openvino_available", lambda: False)
    assert ImageEncoder(input_size=64, precision="int8").int8_engine == "onnxruntime"  # auto falls back
    enc = ImageEncoder(input_size=64, precision="int8", int8_engine="openvino")
    with pytest.raises(RuntimeError, match="needs the openvino package"):
        enc.grid_batch(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.slow(reason="quantizes an encoder with NNCF")
def test_nncf_graph_is_built_once_with_a_manifest_and_keeps_the_stem_fp32(monkeypatch, tmp_path):
    ov = pytest.importorskip("openvino", reason="the openvino-nncf engine needs openvino")
    pytest.importorskip("nncf", reason="the openvino-nncf engine needs nncf")
    monkeypatch.setattr(encoders, "ENCODER_CACHE", tmp_path)
    monkeypatch.setattr(int8, "NNCF_CALIBRATION_IMAGES", 12)
    monkeypatch.setattr(int8, "NNCF_CALIBRATION_CLIPART", 4)
    enc = ImageEncoder(input_size=64, precision="int8", int8_engine="openvino-nncf")
    assert enc.spec["int8_engine"] == "openvino-nncf"
    photo = np.stack([enc.preprocess(Image.fromarray(data.chelsea()))])
    vec = enc.grid_batch(photo).max(axis=(2, 3))
    xml = sorted(tmp_path.glob("*-int8-nncf.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".bin").is_file()
    manifest = read_json(xml[0].with_suffix(".json"))
    assert manifest["recipe"] == int8.NNCF_RECIPE and manifest["calibration"]["images"] == 12
    assert manifest["quantization"]["quantizer"] == "nncf" and manifest["quantization"]["full_bias_correction"]
    ops = ov.Core().read_model(str(xml[0])).get_ops()
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 50  # really int8, not an fp32 copy
    stem = [op for op in ops if op.get_friendly_name().startswith("/conv_stem/") and op.get_type_name() == "Convolution"]
    assert stem and stem[0].input_value(1).get_element_type() == ov.Type.f32  # kept fp32, as the recipe says
    # at 64 px on 12 calibration images NNCF's ranges are coarse (cosine about 0.7): the 224 px agreement is
    # checked on dev photos below; here the int8 vector must still be nearer its own photo's fp32 vector
    fp32 = ImageEncoder(input_size=64, precision="fp32")
    other = np.stack([fp32.preprocess(Image.fromarray(data.coffee()))])
    same, different = (fp32.grid_batch(x).max(axis=(2, 3))[0] for x in (photo, other))
    cos = [float(vec[0] @ v / np.linalg.norm(vec[0]) / np.linalg.norm(v)) for v in (same, different)]
    assert cos[0] > cos[1], cos

    def refuse(*args, **kwargs):
        raise AssertionError("a fresh NNCF graph was quantized again")

    monkeypatch.setattr(int8, "quantize_nncf", refuse)
    again = ImageEncoder(input_size=64, precision="int8", int8_engine="openvino-nncf").grid_batch(photo)
    assert np.array_equal(again.max(axis=(2, 3)), vec)


@pytest.mark.slow(reason="quantizes the 224 px encoder with NNCF once per machine")
def test_nncf_int8_agrees_with_fp32_on_dev_photos():
    pytest.importorskip("nncf", reason="the openvino-nncf engine needs nncf")
    # dev photos (scikit-image samples the recipe was chosen on; none is in the evaluation list or calibrated on)
    names = [n for n in ("chelsea", "coffee", "rocket", "cat", "coins", "clock")
             if f"skimage/data/{n}.png" not in int8.evaluation_paths()]
    photos = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]
    fp32 = get_image_encoder(precision="fp32").classify(photos, top=5)
    q8 = ImageEncoder(precision="int8", int8_engine="openvino-nncf").classify(photos, top=5)
    assert len(photos) >= 5
    assert [r[0][0] for r in q8] == [r[0][0] for r in fp32]
    assert all(f[0][0] in [c for c, _ in q] for f, q in zip(fp32, q8))
