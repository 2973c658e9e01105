"""Train the "up next" model the app serves: Caser on one dataset's training baskets, plus its sequences.

Why a bundle: the app must answer "what comes next for this listener?" from ``models/`` alone (no
dataset folder, no retraining per click); ``music.next.service.NextBundle`` reads what this writes.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging
from typing import Any, Callable

from core.artifacts import ArtifactError, read_json, save_arrays
from core.threads import torch_threads
from music.data import MusicDataset, load_dataset
from music.data.dataset import check_trainable
from music.next import caser, model
from music.next.data import from_dataset, leave_last_out, sequences_to_arrays
from music.next.evaluate import Evaluator, repeats_in_data
from music.next.service import bundle_stem

log = logging.getLogger(__name__)


def train_bundle(
    dataset: str,
    path: str | None = None,
    *,
    init: str = "onehot",
    repeat: bool = True,
    force: bool = False,
    epochs: int = 5,
    progress: Callable[[float, str], None] | None = None,
    data: MusicDataset | None = None,
    **load_kwargs: Any,
) -> dict[str, Any]:
    """Train the default app model for ``dataset``; skip (and say so) when a fresh bundle exists.

    Fresh = same dataset checksum and same configuration. The model is fitted on the training baskets
    of the leave-last-out split with early stopping on the validation baskets (the evaluation's
    protocol), and its validation HR@10 is recorded so the app can show how good it is.
    ``load_kwargs`` go to ``load_dataset`` (e.g. a smaller simulated log in tests); ``data``, when given, is
    used instead (a listening log already read under its own name).
    """
    ds = data if data is not None else load_dataset(dataset, path, **load_kwargs)
    check_trainable(ds, dataset)
    checksum = ds.checksum()
    stem = bundle_stem(dataset)
    # a higher learning rate and patience 1 keep `make run` under a minute on the simulated log
    cfg = model.CaserConfig(init=init, repeat=repeat, epochs=epochs, lr=3e-3, patience=1)
    if not force and stem.with_suffix(".json").is_file() and stem.with_suffix(".keras").is_file():
        try:
            old = read_json(stem.with_suffix(".json"))
            if old.get("dataset_checksum") == checksum and old.get("config", {}).get("init") == init \
                    and old.get("config", {}).get("repeat") == repeat:
                log.info("fresh 'up next' model at %s; skipping (use --force to retrain)", stem)
                return {"skipped": True, "path": str(stem.with_suffix(".keras")), **{k: old.get(k) for k in ("val_hr@10",)}}
        except ArtifactError:
            pass
    seqs = from_dataset(ds)
    split = leave_last_out(seqs)
    exclude_seen = repeats_in_data(seqs, split) < 0.01
    ev = Evaluator(seqs, split, exclude_seen=exclude_seen, max_val_users=1000)
    texts = caser.item_texts(ds.items, seqs.item_ids) if init == "text" else None
    cnn = caser.CaserNext(cfg, texts=texts)
    with torch_threads():
        cnn.fit(seqs, split.train_upto, validate=lambda m: ev.evaluate(m, "val")["hr@10"], progress=progress)
    info = ds.item_info().reindex(seqs.item_ids)
    manifest = {
        "dataset": dataset,
        "dataset_label": getattr(ds, "label", dataset),
        "dataset_checksum": checksum,
        "item_ids": seqs.item_ids,
        "titles": [str(t) if isinstance(t, str) and t else i for t, i in zip(info["title"], seqs.item_ids)],
        "artists": [str(a) if isinstance(a, str) else "" for a in info["artist"]],
        "user_ids": seqs.user_ids,
        "exclude_seen": bool(exclude_seen),
        "seq_config": seqs.config,
        "val_hr@10": cnn.info.get("best_val"),
        "train": {k: v for k, v in cnn.info.items() if k != "history"},
    }
    save_arrays(stem.with_name(stem.name + "_seq"), sequences_to_arrays(seqs), {"kind": "music-next-sequences", **manifest})
    model.save(cnn.model, cfg, stem, manifest)
    return {"skipped": False, "path": str(stem.with_suffix(".keras")), "val_hr@10": cnn.info.get("best_val"),
            "epochs": cnn.info.get("epochs_run"), "seconds": cnn.info.get("seconds")}
