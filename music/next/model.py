"""Caser, the convolutional sequence-embedding recommender (Tang & Wang, WSDM 2018), in Keras 3.

The last ``L`` items a user played are looked up in an item-embedding table and stacked into an
``L × d`` "image". Horizontal filters of heights ``1..L`` slide down the image and are max-pooled over
time (they catch union-level patterns: "after A and B comes C", wherever A, B sit in the window);
vertical filters are weighted sums of the ``L`` rows (point-level: "the recent items, mixed"). Both are
concatenated, passed through a dense layer, joined with a user embedding (long-term taste) and scored
against every item in the catalog.

Three ways to start the item-embedding table, compared side by side in the evaluation:

* ``onehot`` — random, trained from scratch (a one-hot vector times a learned matrix *is* an embedding);
* ``word2vec`` — skip-gram vectors (gensim) learned on the *training* sequences only;
* ``text`` — MiniLM sentence embeddings of "title — artist — tags" (``core.text``), reduced to ``d``
  dimensions by PCA over the catalog (no interaction data, so no leakage).

Any of them can be trainable or frozen. Written with ``keras.ops`` only; saved as ``.keras`` plus a JSON
manifest (never a pickle), atomically. ``music.next.caser`` wraps the network in the next-item interface
the baselines share, and explains its picks.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np
from keras import layers, ops

from core.artifacts import ArtifactError, atomic_path, read_json, write_json
from core.text import get_text_encoder
from core.training import check_loss, keras_loss_guard
from music.next.data import PAD, Samples

log = logging.getLogger(__name__)

INITS = ("onehot", "word2vec", "text")


@dataclass
class CaserConfig:
    """Hyper-parameters; defaults follow the Caser paper scaled to a 2-core CPU."""

    L: int = 5
    T: int = 3
    d: int = 50
    n_h: int = 16
    n_v: int = 4
    dropout: float = 0.5
    init: str = "onehot"
    trainable: bool = True
    epochs: int = 15
    batch_size: int = 256
    lr: float = 1e-3
    l2: float = 1e-6
    seed: int = 0
    patience: int = 2
    repeat: bool = False
    mix: bool = False
    n_sampled: int = 4096
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        """The method name used in evaluation tables (``caser_text``, ``caser_word2vec_frozen_repeat``...)."""
        tail = "_mix" if self.mix else ("_repeat" if self.repeat else "")
        return f"caser_{self.init}" + ("" if self.trainable else "_frozen") + tail


# ----------------------------------------------------------------------------------------------
# layers


@keras.saving.register_keras_serializable(package="music_next")
class VerticalConv(layers.Layer):
    """``n_v`` vertical filters of height ``L``: each is a learned weighted sum of the ``L`` embedding rows."""

    def __init__(self, n_v: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_v = n_v

    def build(self, input_shape: tuple[int, ...]) -> None:
        L = int(input_shape[1])
        self.kernel = self.add_weight(shape=(self.n_v, L), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.n_v,), initializer="zeros", name="bias")

    def call(self, x: Any) -> Any:
        # x: (B, L, d) -> (B, n_v, d) -> (B, n_v * d)
        out = ops.einsum("vl,bld->bvd", self.kernel, x) + ops.reshape(self.bias, (1, self.n_v, 1))
        return ops.reshape(out, (-1, self.n_v * ops.shape(x)[-1]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_v": self.n_v}


@keras.saving.register_keras_serializable(package="music_next")
class ItemScores(layers.Layer):
    """The output layer ``joint @ W + b`` over all items, or over a candidate subset during sampled training.

    Why its own layer: on a large catalog (Last.fm-2K: 18,022 artists) the full softmax dominates the
    cost of an epoch; training on the targets plus a few thousand random items shares these very
    weights, so the saved model still scores the whole catalog.
    """

    def __init__(self, n_out: int, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_out, self.l2 = n_out, l2

    def build(self, input_shape: tuple[int, ...]) -> None:
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), self.n_out), initializer="glorot_uniform",
                                      regularizer=reg, name="kernel")
        self.bias = self.add_weight(shape=(self.n_out,), initializer="zeros", name="bias")

    def call(self, joint: Any, candidates: Any = None) -> Any:
        if candidates is None:
            return ops.matmul(joint, self.kernel) + self.bias
        cand = candidates[0]  # the batch shares one candidate list (repeated per row for Keras' batch axis)
        return ops.matmul(joint, ops.take(self.kernel, cand, axis=1)) + ops.take(self.bias, cand, axis=0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_out": self.n_out, "l2": self.l2}


@keras.saving.register_keras_serializable(package="music_next")
class MaskPadding(layers.Layer):
    """Sets the padding item's score to a large negative number so it never ranks."""

    def call(self, scores: Any) -> Any:
        n = ops.shape(scores)[-1]
        mask = ops.concatenate([ops.ones((1, 1)), ops.zeros((1, n - 1))], axis=-1)
        return scores - 1e9 * ops.cast(mask, scores.dtype)


@keras.saving.register_keras_serializable(package="music_next")
class RepeatMixture(layers.Layer):
    """``log p = log(g · softmax_history(s + w·h) + (1 − g) · softmax_all(s))``: RepeatNet's repeat/explore mix.

    Why: with an additive repeat term the softmax objective, where most targets are new items, drags the
    model away from re-listens; here a gate ``g`` states how likely a re-listen is, and the re-listen
    distribution only competes among the user's own history. Output is a log-probability, so the usual
    loss (log-softmax of it is itself) and ranking both apply unchanged.
    """

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0), name="w")

    def call(self, scores: Any, hist: Any, gate_logit: Any) -> Any:
        in_hist = ops.cast(ops.greater(hist, 0.0), scores.dtype)
        has_hist = ops.max(in_hist, axis=-1, keepdims=True)
        g = ops.sigmoid(gate_logit) * has_hist
        logp_all = ops.log_softmax(scores, axis=-1)
        logp_rep = ops.log_softmax(scores + self.w * hist - 1e9 * (1.0 - in_hist), axis=-1)
        return ops.logaddexp(ops.log(g + 1e-7) + logp_rep, ops.log(1.0 - g + 1e-7) + logp_all)


def build_model(cfg: CaserConfig, n_items: int, n_users: int, item_init: np.ndarray | None = None) -> keras.Model:
    """The Caser network: inputs ``seq`` (B, L) int and ``user`` (B,) int → logits (B, n_items + 1).

    ``item_init`` (n_items + 1, d) seeds the item table (row 0 is padding and stays zero in spirit:
    its value does not matter because padded positions are also zero-masked before the convolutions).
    """
    keras.utils.set_random_seed(cfg.seed)
    seq = keras.Input((cfg.L,), dtype="int32", name="seq")
    user = keras.Input((), dtype="int32", name="user")
    emb_init = keras.initializers.Constant(item_init) if item_init is not None else "uniform"
    item_emb = layers.Embedding(
        n_items + 1, cfg.d, embeddings_initializer=emb_init, trainable=cfg.trainable, name="item_embedding"
    )
    x = item_emb(seq)  # (B, L, d)
    not_pad = ops.expand_dims(ops.cast(ops.not_equal(seq, PAD), x.dtype), -1)
    x = x * not_pad  # padding rows are zero whatever the table holds
    horizontal = []
    for h in range(1, cfg.L + 1):
        conv = layers.Conv1D(cfg.n_h, h, activation="relu", name=f"h_conv_{h}")(x)  # (B, L-h+1, n_h)
        horizontal.append(layers.GlobalMaxPooling1D(name=f"h_pool_{h}")(conv))
    vertical = VerticalConv(cfg.n_v, name="v_conv")(x)
    features = layers.Concatenate(name="features")(horizontal + [vertical])
    features = layers.Dropout(cfg.dropout, name="dropout")(features)
    z = layers.Dense(cfg.d, activation="relu", name="z")(features)
    u = layers.Embedding(n_users + 1, cfg.d, embeddings_initializer="uniform", name="user_embedding")(user)
    joint = layers.Concatenate(name="joint")([z, u])
    out = ItemScores(n_items + 1, l2=cfg.l2, name="scores")
    scores = out(joint)
    inputs = {"seq": seq, "user": user}
    gate = None
    if cfg.mix:
        # repeat/explore mixture (optional): see RepeatMixture
        hist = keras.Input((n_items + 1,), dtype="float32", name="hist")
        gate = layers.Dense(1, name="repeat_gate")(joint)
        scores = RepeatMixture(name="repeat_mixture")(MaskPadding(name="mask_padding_in")(scores), hist, gate)
        inputs["hist"] = hist
        return keras.Model(inputs, MaskPadding(name="mask_padding")(scores), name="caser")  # full softmax only
    if cfg.repeat:
        # Repeat channel (optional, off in plain Caser): log(1 + plays of each item in the whole history),
        # weighted by a gate read from the same features, so the net learns when re-listening is likely.
        hist = keras.Input((n_items + 1,), dtype="float32", name="hist")
        gate = layers.Dense(1, bias_initializer=keras.initializers.Constant(1.0), name="repeat_gate")(joint)
        scores = layers.Add(name="with_repeat")([scores, gate * hist])
        inputs["hist"] = hist
    scores = MaskPadding(name="mask_padding")(scores)
    model = keras.Model(inputs, scores, name="caser")
    # the sampled-softmax twin: same layers, scores only for a candidate list (column 0 = padding)
    cand = keras.Input((None,), dtype="int32", name="cand")
    c_scores = out(joint, cand)
    c_inputs = {"seq": seq, "user": user, "cand": cand}
    if cfg.repeat:
        c_hist = keras.Input((None,), dtype="float32", name="cand_hist")
        c_scores = c_scores + gate * c_hist
        c_inputs["cand_hist"] = c_hist
    model._sampled_twin = keras.Model(c_inputs, MaskPadding(name="mask_padding_sampled")(c_scores), name="caser_sampled")
    return model


def repeat_features(histories: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """(B, n_items + 1) log(1 + play count) of each item in each history: the repeat channel's input."""
    out = np.zeros((len(histories), n_items + 1), np.float32)
    for r, h in enumerate(histories):
        if len(h):
            np.add.at(out[r], h, 1.0)
    np.log1p(out, out=out)
    out[:, PAD] = 0.0
    return out


class _RepeatBatches(keras.utils.PyDataset):
    """Mini-batches with the dense repeat input built on the fly (the full matrix would not fit in memory)."""

    def __init__(self, samples: Samples, flats: Sequence[np.ndarray], n_items: int, batch_size: int,
                 order: np.ndarray) -> None:
        super().__init__()
        self.samples, self.flats, self.n_items, self.batch_size, self.order = samples, flats, n_items, batch_size, order

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        s = self.samples
        hists = [self.flats[int(u)][: int(p)] for u, p in zip(s.users[idx], s.positions[idx])]
        x = {"seq": s.inputs[idx], "user": s.users[idx], "hist": repeat_features(hists, self.n_items)}
        return x, s.targets[idx].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# item-embedding initialisations


def word2vec_vectors(
    sentences: Sequence[Sequence[str]], n_items: int, d: int, *, window: int = 5, seed: int = 0, epochs: int = 10
) -> np.ndarray:
    """Skip-gram vectors for item indices ``1..n_items`` from training sequences of index strings.

    Items never seen in training keep small random vectors (gensim would not know them either). The
    table is rescaled to the spread Keras' own ``uniform`` initialiser uses, so the three inits start
    on a comparable footing.
    """
    from gensim.models import Word2Vec  # optional heavy dependency: gensim loads only for the word2vec initialisation

    rng = np.random.default_rng(seed)
    table = rng.uniform(-0.05, 0.05, size=(n_items + 1, d)).astype(np.float32)
    if not sentences:
        return table
    w2v = Word2Vec(
        sentences=[list(s) for s in sentences], vector_size=d, window=window, min_count=1, sg=1,
        negative=10, workers=1, seed=seed, epochs=epochs,
    )
    for token, idx in w2v.wv.key_to_index.items():
        table[int(token)] = w2v.wv.vectors[idx]
    known = np.array([int(t) for t in w2v.wv.key_to_index], dtype=np.int64)
    return _rescale(table, known)


def text_vectors(texts: Sequence[str], d: int, *, seed: int = 0, encoder: Any = None) -> np.ndarray:
    """MiniLM embeddings of item descriptions (``texts[i]`` describes item ``i + 1``), PCA-reduced to ``d``."""
    # scikit-learn loads in about a second; only the text initialisation needs PCA
    from sklearn.decomposition import PCA

    if encoder is None:
        encoder = get_text_encoder()
    vecs = encoder.encode(list(texts), desc="item texts")
    k = min(d, vecs.shape[0], vecs.shape[1])
    reduced = PCA(n_components=k, random_state=seed).fit_transform(vecs).astype(np.float32)
    table = np.zeros((len(texts) + 1, d), np.float32)
    table[1:, :k] = reduced
    return _rescale(table, np.arange(1, len(texts) + 1))


def _rescale(table: np.ndarray, rows: np.ndarray, target_std: float = 0.05) -> np.ndarray:
    std = float(table[rows].std()) if len(rows) else 0.0
    if std > 0:
        table[rows] *= target_std / std
    table[PAD] = 0.0
    return table


# ----------------------------------------------------------------------------------------------
# training


def train_caser(
    cfg: CaserConfig,
    samples: Samples,
    n_items: int,
    n_users: int,
    *,
    item_init: np.ndarray | None = None,
    flats: Sequence[np.ndarray] | None = None,
    validate: Callable[[keras.Model], float] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train with softmax cross-entropy over all items (multi-target: the ``T`` next items share the mass).

    ``validate(model) -> score`` (higher is better, e.g. HR@10 on the validation split) drives early
    stopping; the weights of the best epoch are restored. Without it, all ``cfg.epochs`` run.
    ``flats`` (each user's training items in order) feeds the repeat channel when ``cfg.repeat``.
    """
    if cfg.mix and not cfg.repeat:
        cfg.repeat = True  # the mixture reads the same history input
    if cfg.repeat and flats is None:
        raise ValueError("the repeat channel needs each user's training sequence (flats)")
    model = build_model(cfg, n_items, n_users, item_init)
    sampled = model._sampled_twin if n_items + 1 > cfg.n_sampled and not cfg.mix else None
    (sampled or model).compile(optimizer=keras.optimizers.Adam(cfg.lr), loss=_soft_target_loss)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, float]] = []
    best, best_weights, bad = -np.inf, None, 0
    guard = keras_loss_guard(cfg.variant)  # a NaN / exploding batch raises: the caller saves nothing
    first: float | None = None
    t0 = time.time()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(samples))
        if sampled is not None:
            fit = _sampled_epoch(sampled, samples, flats, n_items, cfg, order, rng)
        elif cfg.repeat:
            fit = model.fit(_RepeatBatches(samples, flats, n_items, cfg.batch_size, order), epochs=1, verbose=0,
                            callbacks=[guard])
        else:
            fit = model.fit(
                {"seq": samples.inputs[order], "user": samples.users[order]},
                samples.targets[order].astype(np.float32),
                batch_size=cfg.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[guard],
            )
        losses = fit.history.get("loss", [])
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan")}
        if losses:  # the sampled path has no callbacks: its epoch mean is checked here, like every path's
            check_loss(entry["loss"], cfg.variant, f"epoch {epoch + 1}", first)
            first = entry["loss"] if first is None else first
        if validate is not None:
            entry["val"] = float(validate(model))
            if entry["val"] > best + 1e-6:
                best, best_weights, bad = entry["val"], model.get_weights(), 0
            else:
                bad += 1
        history.append(entry)
        log.info("%s epoch %d: %s", cfg.variant, epoch + 1, entry)
        if progress is not None:
            progress((epoch + 1) / cfg.epochs, f"{cfg.variant}: epoch {epoch + 1}")
        if validate is not None and bad >= cfg.patience:
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    info = {
        "history": history,
        "best_val": None if best_weights is None else best,
        "epochs_run": len(history),
        "seconds": round(time.time() - t0, 1),
        "samples": len(samples),
    }
    return model, info


def _sampled_epoch(twin: keras.Model, samples: Samples, flats: Sequence[np.ndarray] | None, n_items: int,
                   cfg: CaserConfig, order: np.ndarray, rng: np.random.Generator) -> Any:
    """One epoch of sampled softmax: per batch, candidates = padding + the batch's targets + random items.

    Uniform negatives need no log-q correction beyond a constant; every target is always a candidate.
    """
    lut = np.zeros(n_items + 1, np.int64)
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        targets = samples.targets[idx]
        pos = np.unique(targets[targets != PAD])
        neg = rng.integers(1, n_items + 1, size=cfg.n_sampled)
        neg = np.setdiff1d(neg, pos)
        cand = np.concatenate([[PAD], pos, neg]).astype(np.int32)
        lut[cand] = np.arange(len(cand))
        x = {"seq": samples.inputs[idx], "user": samples.users[idx], "cand": np.broadcast_to(cand, (len(idx), len(cand)))}
        if cfg.repeat:
            hists = [flats[int(u)][: int(p)] for u, p in zip(samples.users[idx], samples.positions[idx])]
            x["cand_hist"] = repeat_features(hists, n_items)[:, cand]
        losses.append(float(np.asarray(twin.train_on_batch(x, lut[targets].astype(np.float32)))))
        lut[cand] = 0

    class _Fit:
        history = {"loss": losses}

    return _Fit()


def _soft_target_loss(y_true: Any, logits: Any) -> Any:
    """Cross-entropy of softmax(logits) against the next ``T`` items, which share the target mass.

    ``y_true`` holds the (B, T) next-item indices (as floats, Keras' convention; exact below 2**24),
    0 for "no item" at the end of a user's training data. Sparse on purpose: a dense (B, n_items)
    target would cost more than the network on a 17k-artist catalog.
    """
    idx = ops.cast(y_true, "int32")
    mask = ops.cast(ops.not_equal(idx, PAD), logits.dtype)
    logp = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(logp, idx, axis=-1)
    return -ops.sum(picked * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


def predict_scores(model: keras.Model, users: np.ndarray, seqs: np.ndarray,
                   histories: Sequence[np.ndarray] | None = None, batch_size: int = 256) -> np.ndarray:
    """Logits (N, n_items + 1) for user indices and L-item windows (padding column ≈ -1e9).

    ``histories`` (whole item histories) are needed by models with the repeat channel.
    """
    n_out = int(model.output.shape[-1])
    wants_hist = "hist" in model.input
    if wants_hist and histories is None:
        raise ValueError("this model has a repeat channel: pass the histories")
    outs = []
    for start in range(0, len(users), batch_size):
        x = {"seq": seqs[start : start + batch_size].astype(np.int32),
             "user": users[start : start + batch_size].astype(np.int32)}
        if wants_hist:
            x["hist"] = repeat_features(histories[start : start + batch_size], n_out - 1)
        outs.append(np.asarray(model.predict_on_batch(x), dtype=np.float32))
    if not outs:
        return np.zeros((0, n_out), np.float32)
    return np.concatenate(outs)


# ----------------------------------------------------------------------------------------------
# save / load


def save(model: keras.Model, cfg: CaserConfig, path: str | Path, manifest: dict[str, Any]) -> Path:
    """Save the network as ``path`` (``.keras``) and ``manifest`` + config as ``path`` with ``.json``, atomically.

    The manifest is written after the model file, so a manifest never points at a missing model.
    """
    path = Path(path).with_suffix(".keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
    full = {"kind": "music-next-caser", "schema": 1, "file": path.name, "config": asdict(cfg), **manifest}
    write_json(path.with_suffix(".json"), full)
    log.info("saved %s", path)
    return path


def load(path: str | Path, *, hint: str = "python -m music train-next") -> tuple[keras.Model, CaserConfig, dict[str, Any]]:
    """Load a model saved by ``save``; ``ArtifactError`` (with the rebuild command) when missing or corrupt."""
    path = Path(path).with_suffix(".keras")
    manifest = read_json(path.with_suffix(".json")) if path.with_suffix(".json").is_file() else None
    if manifest is None or not path.is_file():
        raise ArtifactError(f"No 'up next' model at {path}. Build it with `{hint}`.")
    if manifest.get("kind") != "music-next-caser":
        raise ArtifactError(f"{path.with_suffix('.json')} is not an 'up next' model manifest. Rebuild with `{hint}`.")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zipfile errors
        raise ArtifactError(f"{path} could not be loaded ({type(exc).__name__}: {exc}). Rebuild with `{hint}`.") from exc
    cfg_dict = dict(manifest.get("config", {}))
    cfg = CaserConfig(**{k: v for k, v in cfg_dict.items() if k in CaserConfig.__dataclass_fields__})
    return model, cfg, manifest
