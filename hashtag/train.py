"""Training: teacher forcing on cached grids (real images + their mirror images), early stopping on val F1@5.

Why it is built this way:

* The CNN is frozen and its grids are cached (``data.grid_cache``), so an epoch over ~1,500 grids takes
  seconds on 2 cores and the default run fits the ≤ 10 min budget of ``make run``.
* Horizontal flips are encoded as real images once: a free 2× augmentation for a 759-image train split.
* Model selection uses the validation split only; the test split is touched once, after training, by
  ``evaluate``. Early stopping watches val F1@5, the number the app's bar is stated in.
* A run is resumable: ``last.pt`` (model + optimiser + RNG-free counters; loaded with ``weights_only=True``)
  is written atomically after each epoch; the best weights go to ``hashtag.safetensors`` + manifest.
* A fresh finished checkpoint (same dataset checksum, encoder spec and config) is reused unless ``force``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from core.artifacts import ArtifactError, atomic_path, checksum_strings, read_json, write_json
from core.encoders import get_image_encoder
from core.training import check_loss
from core.progress import ProgressFn, track
from core.threads import torch_threads
from hashtag.data import DEFAULT_DATASET, HashtagDataset, ensure_dataset, grid_cache
from hashtag.evaluate import score_predictions
from hashtag.feedback import load_feedback_pairs
from hashtag.model import (  # noqa: F401 - model_dir, load_checkpoint, TRAIN_HINT: re-exported for callers of train
    PAD_ID, TRAIN_HINT, DecoderConfig, HashtagDecoder, ModelTagger, load_checkpoint, masked_loss, model_dir,
    save_checkpoint,
)

log = logging.getLogger(__name__)


#: Optional training features and their "off" value: adding one never invalidates existing checkpoints.
NEUTRAL: dict[str, Any] = {"init_pool": "mean", "sample_prob": 0.0, "shuffle_tags": False}


@dataclass
class TrainConfig:
    """Defaults are the ones ``make run`` trains (tuned on the validation split)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 3  # the default run peaks at epoch 8 and never gains after; 6 spent 3 more epochs (36 s) to find that
    max_tags: int = 8
    beam: int = 5
    alpha_c: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.3
    feature_dropout: float = 0.1
    flips: bool = True
    seed: int = 0
    subset: int = 0  # train on the first N training images only (tests); 0 = all
    max_minutes: float = 9.0  # stop (keeping the best epoch) before the ≤ 10 min budget is exceeded
    init_pool: str = "mean"  # see DecoderConfig.init_pool
    sample_prob: float = 0.0  # scheduled sampling: ramps linearly to this over the first 10 epochs
    shuffle_tags: bool = False  # order-free targets: a fresh random tag order per image and epoch
    bf16: bool = True  # autocast matmuls to bfloat16: 2× faster per batch on this AMX CPU (measured), same val F1
    threads: int = 1  # torch intra-op threads; on a busy 2-core box 2 threads ran 10× slower than 1 (spin-waits)

    def key(self, dataset: str, encoder: dict) -> str:
        """Identity of a run: what must match for a checkpoint to count as fresh or resumable."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("epochs", "patience", "max_minutes", "threads")
                  and NEUTRAL.get(k, object()) != v}  # an optional feature left off does not change the identity
        return checksum_strings([dataset, *(f"{k}={v}" for k, v in sorted(encoder.items())),
                                 *(f"{k}={v}" for k, v in sorted(fields.items()))])


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batch_tokens(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


def _targets(seqs: list[list[int]], shuffle: bool, gen: torch.Generator) -> torch.Tensor:
    """A batch's target tokens; with ``shuffle`` each image's tags in a fresh random order (start/end kept)."""
    if shuffle:
        seqs = [[s[0], *(s[1:-1][p] for p in torch.randperm(len(s) - 2, generator=gen).tolist()), s[-1]] for s in seqs]
    return _batch_tokens(seqs)


def validate(model: HashtagDecoder, ds: HashtagDataset, grids: np.ndarray, rows: list[int], beam: int,
             max_tags: int) -> dict[str, float]:
    """Val metrics with the same decoding the app uses (beam + summed-beam tag scores)."""
    tagger = ModelTagger(model, ds.vocab, beam=beam, max_len=max_tags)
    preds = tagger.predict_grids(grids[rows], 5)
    return score_predictions(preds, [ds.examples[i].tags for i in rows])


@dataclass
class _Run:
    """What one training run carries from step to step: the data, the model, its optimiser and the epoch state."""

    ds: HashtagDataset
    config: TrainConfig
    out: Path
    key: str
    grids: np.ndarray
    flips: Optional[np.ndarray]
    samples: list[int]
    tokens: dict[int, Any]
    val_rows: list[int]
    model: HashtagDecoder
    opt: Any
    gen: Any
    state: dict[str, Any]
    base_manifest: dict[str, Any]
    t0: float
    first_loss: Optional[float] = None


def train(
    dataset_root: str | Path = DEFAULT_DATASET,
    config: Optional[TrainConfig] = None,
    *,
    encoder=None,
    force: bool = False,
    progress: Optional[ProgressFn] = None,
    out: Optional[Path] = None,
    evaluate_after: bool = True,
    with_feedback: bool = False,
    store=None,
) -> dict[str, Any]:
    """Train (or reuse) the decoder for a built dataset; returns the final manifest.

    Steps: dataset (built if it is the default and missing) → cached grids → epochs of teacher forcing,
    validation after each, early stopping on val F1@5 → best checkpoint → test evaluation of model and
    baselines (``evaluate.json``, shown in the app).

    Rerunning after an interruption (or after the time budget cut a run short) resumes from ``last.pt``;
    a run that finished (early stopping or all epochs) is reused unless ``force``.

    ``with_feedback`` adds the users' stored (image, final tags) pairs (``hashtag.feedback``, from ``store`` or
    the default feedback database) to training as their own split.
    """
    config = config or TrainConfig()
    t0 = time.time()
    ds = ensure_dataset(Path(dataset_root))
    feedback = None
    if with_feedback:
        feedback = load_feedback_pairs(ds, store)  # users' new tags join ds.vocab before the key is taken
    encoder = encoder or get_image_encoder()
    key = config.key(f"{ds.checksum}/{checksum_strings(ds.vocab.tags)}{feedback.key if feedback else ''}",
                     encoder.spec)  # data + its vocabulary (+ the users' pairs)
    out = Path(out) if out else model_dir(ds.root)
    fresh = None if force else _fresh_manifest(out, key)
    if fresh is not None:
        return fresh
    # small-matrix training: one thread by default (core.threads); restored afterwards, e.g. in the app's process
    with torch_threads(max(1, config.threads)):
        run = _prepare(ds, config, encoder, feedback, out, key, force, progress, t0)
        out_of_time = _epochs(run, progress)
        manifest = _finish(run, out_of_time)
        if evaluate_after and out == model_dir(ds.root):
            # one test-split and dev-photo evaluation of the finished model next to both baselines, for the app
            # to show; nothing is chosen from it. The held-out photo check is left to `python -m hashtag evaluate`
            # (it reads package files that only the tests and evaluations download).
            from hashtag.service import HashtagService

            table = HashtagService(ds.root, encoder=encoder).evaluate("test", check_set=None)
            log.info("test f1@5: %s", {m: r["f1@5"] for m, r in table.items() if "f1@5" in r})
        return manifest


def _fresh_manifest(out: Path, key: str) -> Optional[dict[str, Any]]:
    """The finished model's manifest when one with this exact key is already there, else None."""
    if not (out / "hashtag.json").is_file():
        return None
    try:
        manifest = read_json(out / "hashtag.json")
    except ArtifactError:
        return None
    if manifest.get("key") == key and manifest.get("status") == "done" and manifest.get("complete", True):
        log.info("fresh model in %s (key %s); use --force to retrain", out, key)
        return manifest
    return None


def _prepare(ds: HashtagDataset, config: TrainConfig, encoder, feedback, out: Path, key: str, force: bool,
             progress: Optional[ProgressFn], t0: float) -> _Run:
    """Grids, training rows and targets, a new (or resumed) model and optimiser, and the manifest's fixed part."""
    gen = seed_everything(config.seed)
    arrays = grid_cache(ds, encoder, flips=config.flips, progress=progress)
    grids, flips = arrays["grids"], arrays.get("flips")
    train_rows = [i for i, e in enumerate(ds.examples) if e.split == "train" and
                  any(t in ds.vocab.index for t in e.tags)]
    if config.subset:
        train_rows = train_rows[: config.subset]
    val_rows = [i for i, e in enumerate(ds.examples) if e.split == "val"] or train_rows[:32]
    samples = list(train_rows)
    tokens = {i: ds.vocab.encode(ds.examples[i].tags, config.max_tags) for i in train_rows}
    if feedback is not None:
        grids, flips = feedback.extend(ds, encoder, grids, flips, samples, tokens, config.max_tags)

    mcfg = DecoderConfig(vocab_size=len(ds.vocab), encoder_dim=int(grids.shape[1]), dropout=config.dropout,
                         feature_dropout=config.feature_dropout, init_pool=config.init_pool)
    model = HashtagDecoder(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": []}
    if not force:
        state = _resume(out / "last.pt", key, model, opt, gen, config, state)
    base_manifest = {
        "kind": "hashtag-decoder", "schema": 1, "key": key, "config": mcfg.to_json(), "train": asdict(config),
        "vocab": ds.vocab.tags, "encoder": encoder.spec, "dataset": {**ds.manifest, "root": str(ds.root)},
        "train_images": len(train_rows), "train_samples": len(samples),
        "feedback": feedback.summary() if feedback else {"user_pairs": 0},
    }
    return _Run(ds, config, out, key, grids, flips, samples, tokens, val_rows, model, opt, gen, state,
                base_manifest, t0)


def _resume(last: Path, key: str, model: HashtagDecoder, opt, gen, config: TrainConfig,
            state: dict[str, Any]) -> dict[str, Any]:
    """Continue an interrupted run of the same key from ``last.pt``; an unreadable one means starting over."""
    if not last.is_file():
        return state
    try:
        ck = torch.load(last, map_location="cpu", weights_only=True)
        if ck.get("key") == key:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            state = ck["state"]
            gen.manual_seed(config.seed + state["epoch"])
            log.info("resuming from epoch %d (best val f1@5 %.4f)", state["epoch"], state["best_f1"])
    except Exception as exc:  # noqa: BLE001 - an unreadable last.pt just means starting over
        log.warning("ignoring %s (%s)", last, exc)
    return state


def _epochs(run: _Run, progress: Optional[ProgressFn]) -> bool:
    """Epochs until the budget, the patience or the time runs out; True when the time budget cut the run short."""
    config, state = run.config, run.state
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"] + 1
        losses = _train_epoch(run, epoch, progress)
        _end_epoch(run, epoch, losses, progress)
        if (time.time() - run.t0) / 60 > config.max_minutes:
            log.warning("stopping at epoch %d: the %.0f-minute budget is used up (rerun to resume)", epoch,
                        config.max_minutes)
            return True
    return False


def _train_epoch(run: _Run, epoch: int, progress: Optional[ProgressFn]) -> list[float]:
    """One pass of teacher forcing over the training samples; the per-batch cross-entropies."""
    config, model, opt, gen = run.config, run.model, run.opt, run.gen
    total_epochs = config.epochs
    n_batches = (len(run.samples) + config.batch_size - 1) // config.batch_size
    model.train()
    order = torch.randperm(len(run.samples), generator=gen).tolist()
    # each epoch sees every training image once, as itself or as its mirror image (coin flip per image):
    # augmentation without doubling the epoch's cost
    flip = ((torch.rand(len(run.samples), generator=gen) < 0.5).tolist() if run.flips is not None
            else [False] * len(run.samples))
    losses = []

    def report(frac: float, msg: str) -> None:
        if progress:
            progress(((epoch - 1) + frac) / total_epochs, f"epoch {epoch}/{total_epochs}: {msg}")

    for b in track(range(n_batches), desc=f"epoch {epoch}", progress=report, unit="batch"):
        chunk = [(run.samples[j], flip[j]) for j in order[b * config.batch_size:(b + 1) * config.batch_size]]
        x = np.stack([(run.flips if fl else run.grids)[i] for i, fl in chunk]).astype(np.float32)
        tok = _targets([run.tokens[i] for i, _ in chunk], config.shuffle_tags, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits, alphas = model(torch.from_numpy(x), tok,
                                   sample_prob=config.sample_prob * min(1.0, (epoch - 1) / 10), generator=gen)
        loss, ce = masked_loss(logits.float(), alphas.float(), tok[:, 1:], alpha_c=config.alpha_c,
                               label_smoothing=config.label_smoothing)
        # A diverged batch stops here, before its step and before this epoch writes any checkpoint.
        value = check_loss(loss.detach(), "hashtag decoder", f"epoch {epoch}, batch {b + 1}", run.first_loss)
        run.first_loss = value if run.first_loss is None else run.first_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(ce.detach()))
    return losses


def _end_epoch(run: _Run, epoch: int, losses: list[float], progress: Optional[ProgressFn]) -> None:
    """Validate, keep the best checkpoint, count patience, and save ``last.pt`` to resume from."""
    config, state = run.config, run.state
    val = validate(run.model, run.ds, run.grids, run.val_rows, config.beam, config.max_tags)
    state["epoch"] = epoch
    state["history"].append({"epoch": epoch, "train_ce": round(float(np.mean(losses)), 4),
                             "val_f1@5": val["f1@5"], "seconds": round(time.time() - run.t0, 1)})
    log.info("epoch %d: train ce %.4f, val f1@5 %.4f", epoch, np.mean(losses), val["f1@5"])
    if progress:  # the epoch's validation score, for a job's progress line
        progress(epoch / config.epochs, f"epoch {epoch}/{config.epochs}: val F1@5 {val['f1@5']:.3f}")
    if val["f1@5"] > state["best_f1"]:
        state.update(best_f1=val["f1@5"], best_epoch=epoch, bad_epochs=0)
        save_checkpoint(run.model, run.out, {**run.base_manifest, "status": "training", "epoch": epoch, "val": val,
                                             "history": state["history"]})
    else:
        state["bad_epochs"] += 1
    with atomic_path(run.out / "last.pt") as tmp:
        torch.save({"key": run.key, "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
                    "state": state}, tmp)


def _finish(run: _Run, out_of_time: bool) -> dict[str, Any]:
    """The best checkpoint's manifest, marked done (or incomplete when the time budget cut the run short)."""
    _, manifest = load_checkpoint(run.out)
    manifest.update(status="done", complete=not out_of_time, history=run.state["history"],
                    best_epoch=run.state["best_epoch"], train_seconds=round(time.time() - run.t0, 1))
    write_json(run.out / "hashtag.json", manifest)
    log.info("trained in %.0f s; best val f1@5 %.4f at epoch %d", time.time() - run.t0, run.state["best_f1"],
             run.state["best_epoch"])
    return manifest
