"""docs/encoders.md's generated blocks: the thread-policy table from ``bench/app_load.py --config`` and the
fp32-against-int8 downstream table from ``bench/encoders_downstream.py``."""

from __future__ import annotations

import json
import sys

from tests.paths import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import readme_numbers  # noqa: E402

ACTIONS = ("open", "hashtags", "fashion", "search", "listener")


def _config(threads: str, p50: float, cpus: list[float], load: float) -> dict:
    median = {"runs": len(cpus), "errors": 0, "page_load_timeouts": 0, "completed_journeys": 10 * len(cpus),
              "actions": {a: {"p50_s": p50, "p95_s": 2 * p50} for a in ACTIONS},
              "server_cpu_s_per_journey": sorted(cpus)[len(cpus) // 2], "server_cpu_s_per_journey_runs": cpus}
    return {"env": {"RECS_SERVER_THREADS": threads, "RECS_MODELS_DIR": "/tmp/m"},
            "runs": [{"load_avg_at_start": [load, 1.0, 1.0]} for _ in cpus], "median": {"10": median}}


def _render(tmp_path, name: str, files: dict) -> str:
    results = tmp_path / "results"
    results.mkdir()
    for stem, obj in files.items():
        (results / f"{stem}.json").write_text(json.dumps(obj))
    doc = tmp_path / "doc.md"
    doc.write_text(f"<!-- numbers:{name} -->\nhand-typed\n<!-- /numbers -->\n")
    readme_numbers.main(["--readme", str(doc), "--results", str(results)])
    return doc.read_text()


def test_thread_settings_table_has_one_row_per_setting_with_medians_and_loads(tmp_path):
    result = {"repeats": 2, "order": ["t1", "t2", "t1", "t2"], "cpus": 2, "commit": "abc",
              "load_avg_at_start": [3.0, 2.0, 1.0], "load_avg_at_end": [4.0, 3.0, 2.0],
              "configs": {"t1": _config("1", 12.5, [1.25, 1.5], 3.5), "t2": _config("2", 14.0, [1.75, 2.0], 4.25)}}
    text = _render(tmp_path, "app_load_threads", {"app_load_threads": result})
    assert "hand-typed" not in text
    assert "| t1 (RECS_SERVER_THREADS=1) | 10 | 2 | 0 / 0 | 12.5 / 25.0 |" in text
    assert "| 1.50 (1.25, 1.50) | 3.5, 3.5 |" in text and "| t2 (RECS_SERVER_THREADS=2) |" in text
    assert "/tmp/m" not in text and "order t1, t2" in text


def _downstream(step: str, precision: str, value: float, ci: list[float]) -> dict:
    if step == "fashion":
        evaluate = {m: {"precision@10": value, "ci95": {"precision@10": ci}}
                    for m in ("model", "frozen", "photo:catalog_look")}
        commands = {"index": {"cpu_s": 100.0}, "evaluate": {"cpu_s": 50.0, "result": evaluate}}
    else:
        evaluate = {m: {"recall@10": value, "ci95": {"recall@10": ci}} for m in ("fused", "image", "text:projection")}
        commands = {"evaluate": {"cpu_s": 80.0, "result": evaluate}}
    return {"load_avg_start": [5.0, 4.0, 3.0], "load_avg_end": [6.0, 5.0, 4.0], "threads": 1,
            "int8_engine": "auto", "runs": {precision: {step: commands}}}


def test_downstream_table_judges_each_bar_from_the_four_runs(tmp_path):
    files = {"encoders_downstream_fashion_fp32": _downstream("fashion", "fp32", 0.9030, [0.898, 0.908]),
             "encoders_downstream_fashion_int8": _downstream("fashion", "int8", 0.8970, [0.892, 0.902]),
             "encoders_downstream_multimodal_fp32": _downstream("multimodal", "fp32", 0.2949, [0.258, 0.331]),
             "encoders_downstream_multimodal_int8": _downstream("multimodal", "int8", 0.2960, [0.259, 0.332])}
    files["encoders_downstream_multimodal_int8"]["int8_engine_resolved"] = "openvino"
    text = _render(tmp_path, "encoders_downstream", files)
    fashion = next(line for line in text.splitlines() if line.startswith("| Fashion-MNIST precision@10, 10,000"))
    assert "0.903 [0.898, 0.908] | 0.897 [0.892, 0.902] | -0.0060 | **missed** (bar ±0.005)" in fashion
    fused = next(line for line in text.splitlines() if "fused recall@10" in line)
    assert "| +0.0011 | **met** (bar ±0.01)" in fused
    assert "fashion int8 (RECS_INT8_ENGINE=auto, 1 thread): CPU-s index 100.0, evaluate 50.0" in text
    assert "multimodal fp32 (1 thread): CPU-s evaluate 80.0" in text
    assert "multimodal int8 (openvino, 1 thread)" in text


def test_downstream_block_is_left_while_a_run_is_missing(tmp_path):
    text = _render(tmp_path, "encoders_downstream",
                   {"encoders_downstream_fashion_fp32": _downstream("fashion", "fp32", 0.9, [0.89, 0.91])})
    assert "hand-typed" in text


def _agreement(top1: float) -> dict:
    return {"top1_equal": {"mean": top1, "ci95": [top1 - 0.02, top1 + 0.01]},
            "fp32_top1_in_top5": {"mean": 1.0, "ci95": [1.0, 1.0]},
            "embedding_cosine": {"mean": 0.99751, "ci95": [0.9974, 0.9976]}}


def test_qat_tables_show_every_checkpoint_the_product_build_and_the_evaluation_speed(tmp_path):
    dev = {"dev": {"images": 320, "distinct_photos": 41}, "reference": "fp32", "engine": "ONNX Runtime",
           "rows": {"shipped post-training int8": _agreement(0.875),
                    "QAT lr5e-06-t1 step 120": dict(_agreement(0.953), fine_tuned_fp32=_agreement(0.919))},
           "product_build": _agreement(0.934)}
    text = _render(tmp_path, "encoders_qat_dev", {"encoders_qat_dev": dev})
    assert "| QAT lr5e-06-t1 step 120 | 0.953 [0.933, 0.963] | 1.000 | 0.9975 | 0.919 [0.899, 0.929] |" in text
    assert "| the product's own `RECS_INT8_RECIPE=qat` build | 0.934 [0.914, 0.944] |" in text
    assert "320 dev images from 41 photos" in text and "hand-typed" not in text
    run = {"machine": {"threads": 2, "load_avg_start": [1.3, 1.0, 1.0]}, "photos": {"images": 501, "list": "x.csv"},
           "rows": {"ONNX Runtime fp32": {"speedup_per_repeat_median": 1.0},
                    "QAT int8, OpenVINO": {"speedup_per_repeat_median": 1.93, "agreement": _agreement(0.95)}}}
    (tmp_path / "eval").mkdir()
    text = _render(tmp_path / "eval", "encoders_qat_eval", {"encoders_qat_eval": run})
    assert "| QAT int8, OpenVINO | 0.950 [0.930, 0.960] | 1.000 | 0.9975 | 1.93 |" in text
    assert "ONNX Runtime fp32 |" not in text and "501 photos (x.csv); 2 threads; load average 1.3" in text


def _speed_run(ort: float, ov: float, load: float, warm: bool) -> dict:
    rows = [{"engine": "ONNX Runtime fp32", "batch": 32, "speedup_per_repeat_median": 1.0},
            {"engine": "ONNX Runtime int8 (QDQ)", "batch": 32, "speedup_per_repeat_median": ort},
            {"engine": "OpenVINO int8 (the same QDQ graph)", "batch": 32, "speedup_per_repeat_median": ov},
            {"engine": "OpenVINO int8 (the same QDQ graph)", "batch": 1}]
    run = {"repeats": 7, "machine": {"load_avg_start": [load, 1.0, 1.0]}, "rows": rows}
    return {**run, "timing": "each timing after the pause and one untimed call"} if warm else run


def test_speed_runs_table_has_a_row_per_run_and_the_median_of_the_warm_runs_only(tmp_path):
    files = {"encoders": _speed_run(2.2, 2.3, 0.9, True), "encoders_quiet_a": _speed_run(2.1, 2.0, 1.0, True),
             "encoders_quiet_b": _speed_run(2.4, 2.1, 1.2, True), "encoders_quiet_c": _speed_run(2.0, 2.5, 1.1, True),
             "encoders_before_warmup": _speed_run(1.5, 1.6, 0.7, False)}
    text = _render(tmp_path, "encoder_speed_runs", files)
    assert "| encoders_quiet_b.json | pause + untimed call | 7 | 2.40 | 2.10 | 1.2 |" in text
    assert "| encoders_before_warmup.json | back to back, no untimed call | 7 | 1.50 | 1.60 | 0.7 |" in text
    assert "| median of the runs with pause + untimed call |  |  | **2.15** | **2.20** |  |" in text


def test_speed_runs_block_is_left_while_a_run_is_missing(tmp_path):
    text = _render(tmp_path, "encoder_speed_runs", {"encoders": _speed_run(2.2, 2.3, 0.9, True)})
    assert "hand-typed" in text


def test_timing_table_gives_each_timing_its_median_and_range(tmp_path):
    result = {"machine": {"load_avg_start": [0.8, 1.0, 1.0]}, "alternations": 3, "settle_s": 0.5,
              "rows": [{"timing": "OpenVINO int8, right after ONNX Runtime fp32", "img_per_s": 351.0,
                        "img_per_s_all": [340.2, 351.0, 372.9]}]}
    text = _render(tmp_path, "encoders_timing", {"encoders_timing": result})
    assert "| OpenVINO int8, right after ONNX Runtime fp32 | 351.0 | 340–373 |" in text
    assert "Medians of 3 alternations in one process; pause 0.5 s; load average 0.8 at the start." in text
