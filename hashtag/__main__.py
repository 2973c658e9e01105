"""``python -m hashtag <verb>``: build-dataset, train, predict, evaluate, tune-fusion, import-photos, retrain, versions.

Bad input (missing file, non-image, no trained model) prints one line on stderr and exits non-zero;
``--json`` prints only JSON on stdout (logs and progress bars go to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from core.artifacts import ArtifactError
from core.cli import Parser, run as run_cli
from core.datasets import DataUnavailable
from core.encoders import WeightsUnavailable, get_image_encoder
from core.evaluation import write_result
from core.feedback import FeedbackError, FeedbackStore
from core.images import ImageError, load_image
from core.progress import track
from hashtag import data, service
from hashtag.concepts import tune_fusion
from hashtag.data import DEFAULT_DATASET, DatasetError
from hashtag.jobs import retrain
from hashtag.openvocab import VOCABULARY, build_vocabulary
from hashtag.service import HashtagService, open_vocabulary_tagger
from hashtag.subjects import evaluate_subjects, load_subject_set, tune_guard, tune_order
from hashtag.train import TrainConfig, train
from hashtag.versions import VersionError

os.environ.setdefault("KERAS_BACKEND", "torch")
log = logging.getLogger("hashtag")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m hashtag", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", required=True)
    _add_build_dataset(sub)
    _add_train(sub)
    _add_predict(sub)
    _add_evaluations(sub)

    _version_verbs(sub, DEFAULT_DATASET)
    return p


def _add_build_dataset(sub: Any) -> None:
    b = sub.add_parser("build-dataset", help="write the image→caption and image→hashtags tables, split and vocab")
    b.add_argument("--source", choices=["tuxpaint", "flickr8k", "csv"], default="tuxpaint")
    b.add_argument("--path", help="Tux Paint stamps folder, Flickr8k.token.txt, or the CSV file")
    b.add_argument("--images", help="image folder (Flickr8k: Flicker8k_Dataset; CSV: default its folder)")
    b.add_argument("--out", default=None, help=f"dataset folder (default {DEFAULT_DATASET})")
    b.add_argument("--min-count", type=int, default=1, help="keep tags seen at least this often in train")
    b.add_argument("--json", action="store_true")


def _add_train(sub: Any) -> None:
    """``train``: every ``TrainConfig`` field is also a flag (``learning_rate`` as ``--learning-rate``)."""
    t = sub.add_parser("train", help="train the attention LSTM on cached encoder grids")
    t.add_argument("--dataset", default=str(DEFAULT_DATASET))
    t.add_argument("--force", action="store_true", help="retrain even if a fresh model exists")
    t.add_argument("--model-dir", default=None, help="checkpoint folder (default: <dataset>/model; experiments)")
    t.add_argument("--backbone", default="efficientnet_lite0",
                   help="encoder: efficientnet_lite0 or efficientnet_lite2 (ship offline), resnet152 or resnet50 "
                        "(need their weights)")
    t.add_argument("--weights", default=None, help="a state-dict file for --backbone resnet152/resnet50")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            t.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None, metavar="BOOL")
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            t.add_argument(flag, type=kind, default=None)
    t.add_argument("--with-feedback", action="store_true", help="also train on users' stored (image, tags) pairs")
    t.add_argument("--json", action="store_true")


def _add_predict(sub: Any) -> None:
    pr = sub.add_parser("predict", help="hashtags for photos: files or folders, the models loaded once")
    pr.add_argument("image", nargs="+", metavar="PHOTO_OR_FOLDER",
                    help="image files and/or folders (their images, recursively); one JSON line per photo with --json")
    pr.add_argument("--dataset", default=str(DEFAULT_DATASET))
    pr.add_argument("--method", choices=["fused", "model", "concepts", "knn", "most_frequent"], default="fused",
                    help="fused (default): the decoder's and the ImageNet/WordNet concept tags in one list")
    pr.add_argument("--tagger", choices=["concepts", "clip"], default="concepts",
                    help="clip: add an OpenCLIP model's zero-shot words (opt-in; needs --clip-model)")
    pr.add_argument("--clip-model", default=None, metavar="NAME_OR_DIR",
                    help="an OpenCLIP model folder (open_clip_config.json + weights), or a hub name with "
                         "--allow-download (e.g. ViT-B-32/laion2b_s34b_b79k)")
    pr.add_argument("--allow-download", action="store_true",
                    help="let --clip-model fetch its weights from the hub (never done otherwise)")
    pr.add_argument("--beam", type=int, default=None, help="beam width (default: the training config's)")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    pr.add_argument("--json", action="store_true", help="one JSON object per photo per line")


def _add_evaluations(sub: Any) -> None:
    """The verbs that measure or tune on held-out photos, and the open vocabulary's word list."""
    v = sub.add_parser("build-vocabulary", help="regenerate the open-vocabulary tagger's word list from WordNet + "
                                                "wordfreq (hashtag/openvocab_words.txt)")
    v.add_argument("--json", action="store_true")

    o = sub.add_parser("tune-order", help="choose the hashtag ordering rules on the dev photos' subjects")
    o.add_argument("--dataset", default=str(DEFAULT_DATASET))
    o.add_argument("--beam", type=int, default=None)
    o.add_argument("--weights", default=None)
    o.add_argument("--json", action="store_true")

    s = sub.add_parser("evaluate-subjects", help="subject first / in the top 5 / clip-art words, per group, on a "
                                                 "labelled subject CSV (path,subject,acceptable,group)")
    s.add_argument("csv", nargs="+", help="subject CSV(s); the first names the result file")
    s.add_argument("--name", default=None, help="result name under bench/results/ (default: hashtag_<csv stem>)")
    s.add_argument("--dataset", default=str(DEFAULT_DATASET))
    s.add_argument("--beam", type=int, default=None)
    s.add_argument("--weights", default=None)
    s.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="P/R/F1@1,3,5 and BLEU-1..4 on the test split, model vs baselines")
    e.add_argument("--dataset", default=str(DEFAULT_DATASET))
    e.add_argument("--split", choices=["test", "val"], default="test")
    e.add_argument("--beam", type=int, default=None)
    e.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    e.add_argument("--photos", default="dev",
                   help="real-photo set for the real_photos table: dev (default), check, scenes, a CSV, or none")
    e.add_argument("--check-photos", default="check",
                   help="held-out photo set for the real_photos_check table (default check; none skips it)")
    e.add_argument("--json", action="store_true")

    f = sub.add_parser("tune-fusion", help="choose the fusion weight on the real-photo dev set (Tux Paint val "
                                           "must not lose more than 0.01 F1@5)")
    f.add_argument("--dataset", default=str(DEFAULT_DATASET))
    f.add_argument("--beam", type=int, default=None)
    f.add_argument("--weights", default=None, help="the state-dict file a resnet152/resnet50 model was trained with")
    f.add_argument("--json", action="store_true")


def _version_verbs(sub, default_dataset) -> None:
    """Tagged photos and model versions from the command line (the operator counts as an administrator)."""
    i = sub.add_parser("import-photos", help="store a zip of tagged photos (image,hashtags CSV or Flickr8k layout) "
                                             "as one import of a profile")
    i.add_argument("zip")
    i.add_argument("--profile", required=True, help="a plain profile name (created if missing)")
    i.add_argument("--accept", action="store_true", help="accept the photos for training at once")
    i.add_argument("--json", action="store_true")
    r = sub.add_parser("retrain", help="train a new model version on the dataset plus every accepted tagged photo; "
                                       "served only if it does not score worse on the validation split")
    r.add_argument("--dataset", default=str(default_dataset))
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--json", action="store_true")
    v = sub.add_parser("versions", help="the model versions, which one is served and why a newer one is not")
    v.add_argument("--dataset", default=str(default_dataset))
    v.add_argument("--serve", metavar="VERSION", help="serve this version instead")
    v.add_argument("--json", action="store_true")


def _run_version_verb(args: argparse.Namespace) -> int:
    """``import-photos``, ``retrain`` and ``versions``."""
    if args.verb == "import-photos":
        store = FeedbackStore.open()
        profile = store.create_profile(args.profile)
        path = Path(args.zip)
        if not path.is_file():
            raise FileNotFoundError(f"No such zip file: {path}")
        report = service.import_photos(store, profile, path.read_bytes(), label=path.name,
                                       permission=(bool(args.accept), ""))
        _emit(report, args.json, f"import #{report['batch']}: {report['photos']} photos ({report['kind']}), "
                                 f"{report['tags']} hashtags, {report['review']}; left out: {report['skipped'] or 'none'}")
        return 0
    if args.verb == "retrain":
        config = TrainConfig(**({"epochs": args.epochs} if args.epochs else {}))
        with tempfile.TemporaryDirectory(prefix="recs-retrain-") as scratch:
            result = retrain(args.dataset, config, store=FeedbackStore.open(), scratch=Path(scratch))
        _emit(result, args.json, f"version {result['version']}: {'serving' if result['served'] else 'kept, not served'}"
                                 f" ({result['reason']})")
        return 0
    if args.serve:
        service.switch_version(args.dataset, args.serve, permission=(True, ""))
    rows = service.list_versions(args.dataset)
    if args.json:
        print(json.dumps(rows))
    for row in rows if not args.json else []:
        print(f"{'*' if row['serving'] else ' '} {row['version']}  val F1@5 {row['val_f1@5']}  "
              f"{row['user_photos']} tagged photos  {row['decision']}")
    return 0


def _emit(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj) if as_json else text)


def _service(args: argparse.Namespace):
    """Load the model once; then one torch thread (the encoder sets its own count when it is built)."""
    service = HashtagService(args.dataset, beam=args.beam, weights=args.weights)
    torch.set_num_threads(1)  # the decoder's small steps gain nothing from a 2nd thread; on a busy box it costs 10×
    return service


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return VERBS[args.verb](args)


def _build_dataset(args: argparse.Namespace) -> int:
    if args.source == "tuxpaint":
        examples = data.tuxpaint_examples(args.path)
    elif not args.path:
        raise data.DatasetError(f"--path is required for --source {args.source}")
    elif args.source == "flickr8k":
        images = args.images or str(Path(args.path).parent / "Flicker8k_Dataset")
        examples = data.flickr8k_examples(args.path, images)
    else:
        examples = data.csv_examples(args.path, args.images)
    out = Path(args.out) if args.out else (data.DEFAULT_DATASET if args.source == "tuxpaint"
                                           else data.HASHTAG_DIR / args.source)
    ds = data.build_dataset(examples, out, min_count=args.min_count, name=args.source)
    _emit({**ds.manifest, "root": str(ds.root)}, args.json,
          f"{ds.manifest['images']} images → {ds.root} (splits {ds.manifest['splits']}, "
          f"{ds.manifest['vocab_size']} tags)")
    return 0


def _train(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    encoder = get_image_encoder(args.backbone, weights=args.weights)
    manifest = train(args.dataset, TrainConfig(**overrides), force=args.force, out=args.model_dir, encoder=encoder,
                     with_feedback=args.with_feedback)
    summary = {"model": str(args.model_dir or Path(args.dataset) / "model"), "val": manifest.get("val"),
               "user_pairs": manifest.get("feedback", {}).get("user_pairs", 0),
               "best_epoch": manifest.get("best_epoch"), "train_seconds": manifest.get("train_seconds")}
    _emit(summary, args.json, f"model in {summary['model']}: val f1@5 {manifest.get('val', {}).get('f1@5')} "
                              f"(epoch {summary['best_epoch']}, {summary['train_seconds']} s)")
    return 0


def _build_vocabulary(args: argparse.Namespace) -> int:
    words = build_vocabulary()
    _emit({"words": len(words), "path": str(VOCABULARY)}, args.json, f"{len(words)} words → {VOCABULARY}")
    return 0


def _tune_order(args: argparse.Namespace) -> int:
    service = _service(args)
    result = tune_order(service)
    result["guard"] = tune_guard(service)
    write_result("hashtag_order_tuning", result)
    c = result["chosen"]
    g = result["guard"]["chosen"]
    _emit(result, args.json, f"order rules {c['name']}: dev subject@1 {c['subject@1']} subject@5 "
                             f"{c['subject@5']} (concepts alone {result['concepts']}); confidence guard "
                             f"{g['confident']}: subject@1 {g['subject@1']} @5 {g['subject@5']}, val F1@5 "
                             f"{g['val_f1@5']}")
    return 0


def _evaluate_subjects(args: argparse.Namespace) -> int:
    photos = [p for path in args.csv for p in load_subject_set(path)]
    if not photos:
        raise DataUnavailable(f"None of the photos of {', '.join(args.csv)} could be found.")
    name = args.name or f"hashtag_{Path(args.csv[0]).stem}"
    result = evaluate_subjects(_service(args), photos, name=name)
    write_result(name, result)
    m = result["methods"]
    _emit(result, args.json, "\n".join(f"{k:16s} subject@1 {v['subject@1']} {v['subject@1_ci95']}  subject@5 "
                                       f"{v['subject@5']} {v['subject@5_ci95']}  tuxpaint@5 {v['tuxpaint@5']}"
                                       for k, v in m.items()))
    return 0


def _tune_fusion(args: argparse.Namespace) -> int:
    result = tune_fusion(_service(args))
    write_result("hashtag_fusion_tuning", result)
    c = result["chosen"]
    _emit(result, args.json, f"concept ranking {result['ranking']}; fusion: decoder weight {c['near']} near "
                             f"its training images ({result['gate']} ≥ {c['threshold']}), {c['far']} elsewhere, agreement "
                             f"bonus {c['agree']}; dev P@5 {c['dev_precision@5']} hit@1 {c['dev_hit@1']} F1@5 "
                             f"{c['dev_f1@5']}, val F1@5 {c['val_f1@5']} (decoder alone "
                             f"{result['model_val_f1@5']})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    photos = None if args.photos.lower() == "none" else args.photos
    check = None if args.check_photos.lower() == "none" else args.check_photos
    table = _service(args).evaluate(args.split, photo_set=photos, check_set=check)
    if args.split == "test":

        write_result("hashtag_evaluate", table, seeds={"bootstrap": 0})
    lines = []
    groups = ("real_photos", "real_photos_check")
    for group, rows in [("", {m: r for m, r in table.items() if m not in groups}),
                        *((f"{g} ", table.get(g) or {}) for g in groups)]:
        lines += [f"{group}{m:14s} " + " ".join(f"{k}={v}" for k, v in row.items() if k != "ci95")
                  for m, row in rows.items() if isinstance(row, dict)]
    _emit(table, args.json, "\n".join(lines))
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".svg")


def photo_paths(items: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted); a missing path is an error."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"No such image file or folder: {path}")
    return out


def _predict(args: argparse.Namespace) -> int:
    """Hashtags for every photo: the models load once; one JSON line per photo (an unreadable one gets an
    ``error`` line and the rest go on). A single file given alone keeps the one-line error and exit 2."""
    paths = photo_paths(args.image)
    if not paths:
        raise FileNotFoundError(f"No image files in {', '.join(args.image)}.")
    single = len(args.image) == 1 and len(paths) == 1 and not Path(args.image[0]).is_dir()
    if single:
        load_image(paths[0])  # bad input fails here, before the models are loaded
    if args.tagger == "clip" and not args.clip_model:
        raise ValueError("--tagger clip needs --clip-model NAME_OR_DIR (an OpenCLIP model folder, or a hub name "
                         "with --allow-download).")
    if args.tagger == "clip" and args.method != "fused":
        raise ValueError("--tagger clip fuses with the concept tags: use it with --method fused.")
    service = _service(args)
    open_vocab = None
    if args.tagger == "clip":
        open_vocab = open_vocabulary_tagger(args.clip_model, allow_download=args.allow_download)
    done = 0
    for path in track(paths, desc="tagging photos", unit="photo", total=len(paths)):
        obj: dict[str, Any] = {"path": str(path), "method": args.method}
        try:
            image = load_image(path)
            if args.method == "fused":
                results, picture = service.predict_fused(image, k=args.top_k, open_vocabulary=open_vocab)
                obj["picture"] = picture.to_json()
            else:
                results = service.predict(image, method=args.method, k=args.top_k)
        except (ImageError, OSError, ValueError) as exc:
            if single:
                raise
            obj["error"] = str(exc)
        else:
            obj["hashtags"] = [r.to_json() for r in results]
            done += 1
        text = (f"{path}: error: {obj['error']}" if "error" in obj else
                f"{path}: " + " ".join(f"#{h['tag']}({h['score']:.2f})" for h in obj["hashtags"]))
        print(json.dumps(obj) if args.json else text, flush=True)
    if not done:
        raise FileNotFoundError(f"None of the {len(paths)} photos could be read.")
    return 0


#: each verb's handler; each returns the exit code
VERBS = {"build-dataset": _build_dataset, "train": _train, "predict": _predict,
         "build-vocabulary": _build_vocabulary, "tune-order": _tune_order, "evaluate-subjects": _evaluate_subjects,
         "evaluate": _evaluate, "tune-fusion": _tune_fusion,
         "import-photos": _run_version_verb, "retrain": _run_version_verb, "versions": _run_version_verb}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; expected failures become one line on stderr and exit code 2 (1 for the unexpected)."""
    return run_cli(lambda: run(argv), expected=(ImageError, ArtifactError, DataUnavailable, DatasetError,
                                                WeightsUnavailable, FeedbackError, VersionError))


if __name__ == "__main__":
    sys.exit(main())
