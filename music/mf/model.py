"""Keras 3 matrix factorisation (torch backend, ``keras.ops`` only): user/item embeddings + biases.

Three training objectives, one scoring rule ``p_u · q_i + b_u + b_i + μ``:

- ``explicit`` (ratings): MSE on observed ratings, per-example L2 on the factors and biases
  that are touched (the classic biased MF / "SVD" of the Netflix prize).
- ``softmax`` (play counts, default for implicit data): for each (user, item) play pair, a
  softmax of the played item against negatives: the whole catalog when it has at most
  ``n_sampled`` items, else ``n_sampled`` uniformly sampled items shared by the batch (a sampled
  softmax). The pair is weighted by log confidence ``1 + α·log(1 + plays)`` so a heavy rotation
  counts more than one play without drowning everything else.
- ``bpr``: Bayesian personalised ranking with one uniformly sampled negative per positive.

Why a custom layer and not ``Embedding`` + ``Dot``: the factors must be reachable as whole
matrices for full-catalog scoring in training (softmax) and for fast numpy scoring, similar
items and reasons after training.

Factor artifact (what ``save`` writes, for any engine or fold-in that reuses trained factors):

- ``<stem>.npz`` — float32 arrays ``P`` (users × dim; with the SVD++ term already folded in, so
  ``P[u]`` is the effective user factor), ``Q`` (items × dim), ``bu`` (users), ``bi`` (items), and the
  training history as COO triples ``hist_user``, ``hist_item`` (int32) and ``hist_weight`` (float32);
- ``<stem>.json`` — the manifest: ``kind`` = ``"music-mf"``, ``schema``, ``users`` and ``items`` (the
  id maps: row ``u`` of ``P`` is user ``users[u]``, row ``i`` of ``Q`` is item ``items[i]``), ``titles``,
  ``artists``, ``genres``, ``data_kind``, ``dataset``, ``dataset_checksum``, the hyper-parameters
  (``mode``, ``dim``, ``l2``, ``alpha``, ...), ``global_bias`` (μ), the replayable ``schedule`` and the
  per-epoch ``history``;
- ``<stem>.keras`` — the Keras model itself (for fine-tuning), checked against ``keras_checksum``.

A score is ``P[u] · Q[i] + bu[u] + bi[i] + μ``. Solving a new user's factor with ``Q`` and ``bi``
held fixed (a fold-in) therefore needs only the ``.npz`` arrays and the manifest's ``items`` and ``l2``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from core.artifacts import ArtifactError, atomic_path, checksum_files, load_arrays, save_arrays
from core.training import check_loss, keras_loss_guard
from core.threads import torch_threads
from core.progress import track
from music.data import MusicDataset
from music.mf.data import Catalog
from music.recommender import Recommendation, Recommender, UnknownUser, top_n

log = logging.getLogger(__name__)

MODES = ("explicit", "softmax", "bpr", "wmf")

#: Hyper-parameters chosen on validation splits carved from training data (see docs/music.md).
MF_DEFAULTS: dict[str, dict[str, Any]] = {
    # ratings: per-example SGD (Funk/Koren style), SVD++ term, learning rate cut on plateaus
    "explicit": {"dim": 100, "l2": 0.1, "epochs": 100, "batch_size": 256, "lr": 0.01, "optimizer": "sgd",
                 "svdpp": True, "lr_decays": 2, "patience": 2},
    # play counts: the weighted-MF (iALS) objective with item biases, trained by Adam
    "implicit": {"mode": "wmf", "dim": 64, "l2": 0.05, "epochs": 40, "batch_size": 1024, "lr": 1e-2, "alpha": 1.0,
                 "patience": 3, "val_metric": "ndcg", "lr_decays": 1},
}
#: Per-dataset overrides, chosen on the validation split of `python -m music evaluate --dataset simulated`
#: (weighted objective 0.137 validation NDCG@10 vs softmax 0.125 on the simulated log).
DATASET_MF: dict[str, dict[str, Any]] = {
    "simulated": {"mode": "wmf", "dim": 64, "l2": 0.05, "epochs": 30, "batch_size": 512, "lr": 3e-3,
                  "alpha": 1.0, "patience": 2, "val_metric": "ndcg"},
}


def mf_config(dataset: str, kind: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """MF hyper-parameters: kind defaults, then the dataset's validated overrides, then the caller's."""
    return {**MF_DEFAULTS[kind], **DATASET_MF.get(dataset, {}), **(overrides or {})}


# ----------------------------------------------------------------------------------------------
# the catalog-based base


class CatalogRecommender(Recommender):
    """A ``music.recommender.Recommender`` over a ``Catalog``: external ids in, titles and reasons out.

    Subclasses implement ``_fit``, ``score`` and their ``_arrays``/``_from_arrays``; this class adds
    ``recommend`` (on external user ids, seen items excluded), ``similar_items`` (co-listening) and
    ``save``/``load`` (arrays + JSON manifest, never a pickle).
    """

    name: ClassVar[str] = "base"
    catalog: Catalog

    # -- fitting and scoring --
    def fit(self, data: MusicDataset, train: pd.DataFrame | None = None, **kwargs: Any) -> "CatalogRecommender":
        """Fit on ``train`` (default: all of ``data``'s interactions), with ``data``'s id maps."""
        self.catalog = Catalog.from_dataset(data, train)
        self._fit(**kwargs)
        return self

    def _fit(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Scores of every item for each user index in ``users``: shape (len(users), n_items).

        ``histories`` is accepted for the shared interface and ignored: these models read the
        user's training history from the catalog, without order.
        """
        raise NotImplementedError

    # -- public API on external ids --
    def user_index(self, user: str) -> int:
        u = self.catalog.users.get(user)
        if u < 0:
            raise UnknownUser(f"user {user!r} is not in the {self.catalog.dataset or 'training'} data")
        return u

    def recommend(self, user: str, n: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``n`` items for a known user, each with a reason; raises ``UnknownUser`` otherwise."""
        u = self.user_index(user)
        picks = self.top_items(u, n, exclude=self.catalog.seen(u) if exclude_seen else None)
        return [self._rec(i, s, self.explain(u, i)) for i, s in picks]

    def similar_items(self, item: str, n: int = 10) -> list[tuple[str, float]]:
        """Items most similar to ``item`` (by co-listening here; by embeddings in MF)."""
        i = self.catalog.items.index(item)
        h = self.catalog.history.tocsc()
        col = (h[:, i] > 0).astype(np.float32)
        co = np.asarray((h > 0).astype(np.float32).T @ col).ravel()
        norm = np.sqrt(np.asarray((h > 0).sum(axis=0)).ravel() * max(co[i], 1.0)) + 1e-9
        sim = co / norm
        sim[i] = -np.inf
        return [(self.catalog.items.external(j), float(sim[j])) for j in top_n(sim, n)]

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        """The reason shown beside a pick (here: the item's main genre, or plain popularity)."""
        g = self.catalog.genres[item]
        return f"popular in {g[0]}" if g else "popular with all listeners"

    def _rec(self, i: int, score: float, reason: str) -> Recommendation:
        c = self.catalog
        return Recommendation(c.items.external(i), c.titles[i], c.artists[i], list(c.genres[i]), float(score), reason)

    # -- persistence (arrays + JSON manifest; never pickle) --
    def save(self, stem: str | Path) -> Path:
        arrays = {**self.catalog.to_arrays(), **self._arrays()}
        manifest = {"kind": f"music-{self.name}", "schema": 1, **self.catalog.to_manifest(), **self._config()}
        return save_arrays(stem, arrays, manifest)

    @classmethod
    def load(cls, stem: str | Path, *, expect_checksum: str | None = None) -> "CatalogRecommender":
        expect = {"dataset_checksum": expect_checksum} if expect_checksum else None
        arrays, m = load_arrays(stem, kind=f"music-{cls.name}", expect=expect, hint="python -m music train --force")
        try:
            obj = cls.__new__(cls)
            m = dict(m, _stem=str(stem))
            obj.catalog = Catalog.from_saved(arrays, m)
            obj._from_arrays(arrays, m)
        except (KeyError, ValueError, IndexError) as exc:
            raise ArtifactError(f"{stem} is corrupt or from another version ({exc!r}); "
                                "rebuild with `python -m music train --force`.") from exc
        return obj

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _config(self) -> dict[str, Any]:
        return {}

    def _from_arrays(self, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        pass



# ----------------------------------------------------------------------------------------------
# matrix factorisation


def val_score(rec: dict[str, Any]) -> float:
    """The early-stopping criterion of one epoch record (lower is better)."""
    if "val_ndcg" in rec:
        return -float(rec["val_ndcg"])
    return float(rec.get("val_rmse", rec.get("val_loss", math.inf)))


def best_epoch(history: list[dict[str, Any]]) -> int:
    """Epoch (1-based) with the best validation criterion; the last epoch if there was no validation."""
    if not history:
        return 0
    return int(min(history, key=val_score)["epoch"]) if any(val_score(h) < math.inf for h in history) \
        else int(history[-1]["epoch"])


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """Train on ``RECS_TORCH_THREADS`` (default 1) intra-op threads, then restore.

    Why: these small matmuls gain little from a second thread, and on a shared 2-core machine
    torch's spinning threads under contention made an epoch 10× slower (measured 53 s vs 4.5 s).
    """
    import keras  # keras (and torch) load in seconds; serving a saved model scores with numpy alone

    if keras.backend.backend() != "torch":
        yield
        return
    with torch_threads():
        yield


class KerasMF(CatalogRecommender):
    """Matrix factorisation trained with Keras; scores and reasons computed from its factors in numpy."""

    name = "mf"

    def __init__(self, mode: str | None = None, dim: int = 64, l2: float = 1e-4, epochs: int = 20,
                 batch_size: int = 512, lr: float = 3e-3, alpha: float = 1.0, seed: int = 0,
                 patience: int = 2, n_sampled: int = 2048, optimizer: str = "adam", svdpp: bool = False,
                 lr_decays: int = 0, schedule: list[tuple[float, int]] | None = None,
                 val_metric: str = "loss") -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.dim, self.l2, self.epochs = mode, dim, l2, epochs
        self.batch_size, self.lr, self.alpha, self.seed, self.patience = batch_size, lr, alpha, seed, patience
        self.n_sampled, self.optimizer, self.svdpp, self.lr_decays = n_sampled, optimizer, svdpp, lr_decays
        self.schedule, self.val_metric = schedule, val_metric
        self.model: Any = None  # the keras.Model once trained or loaded
        self.history_: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------------
    def _fit(self, val: Any = None, progress: Optional[Callable[[float, str], None]] = None,
             validate: Optional[Callable[["KerasMF", pd.DataFrame], float]] = None, **kwargs: Any) -> None:
        """Train; with ``val`` (a frame of held-out interactions) keep the epoch with the best validation score.

        ``validate(model, val)`` is the ranking metric (higher is better, e.g. NDCG@10) used when
        ``val_metric`` is ``"ndcg"``; the caller passes the evaluation's own metric so that early
        stopping ranks the validation items exactly as the evaluation will.
        """
        if self.val_metric == "ndcg" and val is not None and validate is None:
            raise ValueError("val_metric 'ndcg' needs a validate(model, val) callback (music.mf.evaluate.val_ndcg)")
        with _torch_threads():
            self._train(val, progress, validate)

    def _train(self, val: Any, progress: Optional[Callable[[float, str], None]],
               validate: Optional[Callable[["KerasMF", pd.DataFrame], float]] = None) -> None:
        import keras  # keras (and torch) load in seconds; serving a saved model scores with numpy alone

        c = self.catalog
        self.mode = self.mode or ("explicit" if c.kind == "explicit" else "softmax")
        keras.utils.set_random_seed(self.seed)
        h = c.history.tocoo()
        u, i, w = h.row.astype(np.int32), h.col.astype(np.int32), h.data.astype(np.float32)
        self._build(keras, w)
        x, y, sw = self._examples(u, i, w)
        vdata = None
        if val is not None and len(val):
            vu = c.users.indices(val["user"])
            vi = c.items.indices(val["item"])
            ok = (vu >= 0) & (vi >= 0)
            vx, vy, vsw = self._examples(vu[ok].astype(np.int32), vi[ok].astype(np.int32),
                                         val["weight"].to_numpy(np.float32)[ok])
            vdata = (vx, vy, vsw)
        self._epochs(keras, (x, y, sw), val, vdata, progress, validate)
        self._extract()

    def _build(self, keras: Any, w: np.ndarray) -> None:
        """The Keras model for ``mode`` around one ``MFLayer``, its fixed per-user/item inputs set, compiled."""
        # keras (and torch) load in seconds; serving a saved model scores with numpy alone
        from music.mf.layer import MFLayer, wmf_loss

        c = self.catalog
        mu = float(w.mean()) if self.mode == "explicit" and len(w) else 0.0
        self.clip = (float(w.min()), float(w.max())) if self.mode == "explicit" and len(w) else None
        layer = MFLayer(c.n_users, c.n_items, self.dim, self.l2, self.mode, mu, n_sampled=self.n_sampled,
                        seed=self.seed, svdpp=self.svdpp, name="mf")
        width = {"explicit": 2, "softmax": 2, "bpr": 3, "wmf": 2}[self.mode]
        inp = keras.Input(shape=(width,), dtype="int32", name="ids")
        self.model = keras.Model(inp, layer(inp), name=f"mf_{self.mode}")
        if self.mode == "wmf":
            binary = (c.history != 0)
            layer.inv_nu.assign((1.0 / np.maximum(np.asarray(binary.sum(axis=1)).ravel(), 1)).astype(np.float32))
            layer.inv_ni.assign((1.0 / np.maximum(np.asarray(binary.sum(axis=0)).ravel(), 1)).astype(np.float32))
        if layer.svdpp:
            rated = (c.history != 0).astype(np.float32)
            n = np.asarray(rated.sum(axis=1)).ravel()
            layer.N.assign(np.asarray(sparse.diags(1.0 / np.sqrt(np.maximum(n, 1))) @ rated.toarray(), np.float32))
        loss = {"explicit": keras.losses.MeanSquaredError(),
                "softmax": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "bpr": keras.losses.BinaryCrossentropy(from_logits=True), "wmf": wmf_loss}[self.mode]
        self.model.compile(optimizer=self._optimizer(keras), loss=loss)

    def _epochs(self, keras: Any, train: tuple, val: Any, vdata: Optional[tuple],
                progress: Optional[Callable[[float, str], None]],
                validate: Optional[Callable[["KerasMF", pd.DataFrame], float]]) -> None:
        """The epochs: with validation, stop after ``patience`` epochs without a better score (after
        ``lr_decays`` plateaus with a smaller learning rate) and keep the best weights; the schedule run is
        recorded in ``schedule_`` so it can be replayed without validation (``schedule``)."""
        x, y, sw = train
        best, best_w, bad, decays = math.inf, None, 0, 0
        # ``schedule`` replays a validated run without validation: [(lr factor, epochs), ...].
        replay = [(float(f), int(n)) for f, n in (self.schedule or [])]
        phases = [f for f, n in replay for _ in range(n)]
        total = len(phases) if replay else self.epochs
        lr0, factor, phase_start, best_at, stopped = self.lr, 1.0, 0, -1, False
        self.schedule_: list[tuple[float, int]] = []
        rng = np.random.default_rng(self.seed)
        guard = keras_loss_guard(f"MF ({self.mode})")  # raises on a NaN / exploding batch: nothing gets saved
        for epoch in track(range(total), desc=f"MF ({self.mode})", progress=progress, unit="epoch"):
            if replay and phases[epoch] != factor:
                factor = phases[epoch]
                self.model.optimizer.learning_rate.assign(self._keras_lr(lr0 * factor))
            if self.mode == "bpr":  # fresh negatives every epoch
                x[:, 2] = rng.integers(0, self.catalog.n_items, len(x))
            hist = self.model.fit(x, y, sample_weight=sw, batch_size=self.batch_size, epochs=1, verbose=0,
                                  shuffle=True, callbacks=[guard])
            rec = {"epoch": epoch + 1, "lr_factor": factor,
                   "loss": check_loss(hist.history["loss"][-1], f"MF ({self.mode})", f"epoch {epoch + 1}")}
            if vdata is not None:
                rec.update(self._val_record(val, vdata, validate))
                if val_score(rec) < best - 1e-5:
                    best, best_w, bad, best_at = val_score(rec), self.model.get_weights(), 0, epoch
                else:
                    bad += 1
            self.history_.append(rec)
            log.info("MF epoch %s", rec)
            if vdata is not None and bad >= self.patience:
                self.schedule_.append((factor, max(0, best_at - phase_start + 1)))
                if decays >= self.lr_decays or best_w is None:
                    stopped = True
                    break
                # Plateau: go back to the best epoch and take smaller steps from there.
                decays, bad, factor, phase_start = decays + 1, 0, factor * 0.3, epoch + 1
                self.model.set_weights(best_w)
                self.model.optimizer.learning_rate.assign(self._keras_lr(lr0 * factor))
                log.info("MF: validation plateau, learning rate x%.3g", factor)
        if vdata is not None and not stopped:
            self.schedule_.append((factor, max(0, best_at - phase_start + 1)))
        if replay or vdata is None:
            self.schedule_ = replay or [(1.0, total)]
        if best_w is not None:
            self.model.set_weights(best_w)

    def _val_record(self, val: Any, vdata: tuple,
                    validate: Optional[Callable[["KerasMF", pd.DataFrame], float]]) -> dict[str, float]:
        """This epoch's validation score: RMSE (explicit), the caller's NDCG (``val_metric`` "ndcg") or the loss."""
        if self.mode == "explicit":  # the metric itself, without the L2 term evaluate() adds
            self._extract()
            return {"val_rmse": float(np.sqrt(np.mean((self.predict(vdata[0][:, 0], vdata[0][:, 1],
                                                                    clip=self.clip) - vdata[1]) ** 2)))}
        if self.val_metric == "ndcg":  # rank the validation items as the evaluation will
            self._extract()
            return {"val_ndcg": float(validate(self, val))}  # type: ignore[misc]
        return {"val_loss": float(self.model.evaluate(vdata[0], vdata[1], sample_weight=vdata[2],
                                                      batch_size=4096, verbose=0))}

    def _optimizer(self, keras: Any) -> Any:
        """Adam, or plain SGD with ``lr`` per example (scaled by the batch, as the loss is a batch mean).

        Why SGD exists: Adam rescales every embedding row's step by its own gradient history, so rarely
        rated items take large steps and overfit; classic per-example SGD (Funk/Koren) does not.
        """
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(self._keras_lr(self.lr))
        return keras.optimizers.Adam(self.lr)

    def _keras_lr(self, lr: float) -> float:
        return lr * self.batch_size if self.optimizer == "sgd" else lr

    def _examples(self, u: np.ndarray, i: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(u)
        if self.mode == "explicit":
            return np.stack([u, i], 1), w.astype(np.float32), np.ones(n, np.float32)
        conf = (1.0 + self.alpha * np.log1p(np.abs(w))).astype(np.float32)
        if self.mode == "wmf":  # the confidence is part of the loss itself, so it travels as y
            return np.stack([u, i], 1).astype(np.int32), conf, np.ones(n, np.float32)
        if self.mode == "softmax":
            return np.stack([u, i], 1).astype(np.int32), np.zeros(n, np.int32), conf / conf.mean()
        neg = np.zeros(n, np.int32)
        return np.stack([u, i, neg], 1).astype(np.int32), np.ones(n, np.float32), conf / conf.mean()

    def _extract(self) -> None:
        from keras import ops  # keras (and torch) load in seconds; serving a saved model scores with numpy alone

        layer = self.model.get_layer("mf")
        self.P, self.Q = (np.asarray(ops.convert_to_numpy(t), np.float32) for t in (layer.P, layer.Q))
        if layer.svdpp:  # serve with effective user factors p_u + |N(u)|^-1/2 Σ y_j
            self.P = self.P + np.asarray(ops.convert_to_numpy(layer.N), np.float32) @ \
                np.asarray(ops.convert_to_numpy(layer.Y), np.float32)
        self.bu, self.bi = (np.asarray(ops.convert_to_numpy(t), np.float32) for t in (layer.bu, layer.bi))
        self.mu = float(layer.global_bias)
        norms = np.linalg.norm(self.Q, axis=1, keepdims=True)
        self.Qn = self.Q / np.maximum(norms, 1e-9)

    # ------------------------------------------------------------------------------------------
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        return self.P[users] @ self.Q.T + self.bi[None, :] + self.bu[users][:, None] + self.mu

    def predict(self, users: np.ndarray, items: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Pairwise predictions; unknown users/items (index -1) fall back to the biases we have."""
        users, items = np.asarray(users), np.asarray(items)
        ku, ki = users >= 0, items >= 0
        pred = np.full(len(users), self.mu, np.float64)
        pred[ku] += self.bu[users[ku]]
        pred[ki] += self.bi[items[ki]]
        both = ku & ki
        pred[both] += np.sum(self.P[users[both]] * self.Q[items[both]], axis=1)
        return np.clip(pred, *clip) if clip else pred

    def similar_items(self, item: str, n: int = 10) -> list[tuple[str, float]]:
        i = self.catalog.items.index(item)
        sim = self.Qn @ self.Qn[i]
        sim[i] = -np.inf
        return [(self.catalog.items.external(j), float(sim[j])) for j in top_n(sim, n)]

    def explain(self, user: int, item: int, history: np.ndarray | None = None, *,
                name: Callable[[int], str] | None = None) -> str:
        """'because you listened to X': the history item nearest to ``item`` in embedding space."""
        u, i = user, item
        c = self.catalog
        row = c.history[u]
        hist, w = row.indices, row.data
        if c.kind == "explicit" and len(w):
            keep = w >= max(w.mean(), 3.5) if (w >= 3.5).any() else w >= w.mean()
            hist = hist[keep]
        if len(hist) == 0:
            return super().explain(u, i)
        j = int(hist[np.argmax(self.Qn[hist] @ self.Qn[i])])
        verb = "liked" if c.kind == "explicit" else "listened to"
        who = f" by {c.artists[j]}" if c.artists[j] and c.artists[j] != c.titles[j] else ""
        return f"because you {verb} {c.titles[j]}{who}"

    # ------------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        keys = ("mode", "dim", "l2", "epochs", "batch_size", "lr", "alpha", "seed", "n_sampled", "optimizer", "svdpp",
                "lr_decays", "val_metric")
        return {**{k: getattr(self, k) for k in keys}, "schedule": getattr(self, "schedule_", None),
                "history": self.history_, "keras_checksum": getattr(self, "_keras_sum", ""), "global_bias": self.mu,
                "engine": getattr(self, "engine", "keras"), "engine_params": getattr(self, "engine_params", None)}

    def save(self, stem: str | Path) -> Path:
        """``stem.keras`` (the Keras model) + ``stem.npz``/``stem.json`` (catalog, manifest)."""
        stem = Path(stem)
        keras_path = stem.with_suffix(".keras")
        with atomic_path(keras_path) as tmp:
            self.model.save(tmp)
        self._keras_sum = checksum_files([keras_path])
        return super().save(stem)

    def _arrays(self) -> dict[str, np.ndarray]:
        # The factors are also kept as plain arrays so serving needs neither keras nor torch.
        return {"P": self.P, "Q": self.Q, "bu": self.bu, "bi": self.bi}

    def _from_arrays(self, arrays: dict[str, np.ndarray], m: dict[str, Any]) -> None:
        self.n_sampled, self.optimizer = int(m.get("n_sampled", 0)), str(m.get("optimizer", "adam"))
        self.svdpp, self.lr_decays = bool(m.get("svdpp", False)), int(m.get("lr_decays", 0))
        self.schedule = self.schedule_ = m.get("schedule")
        self.val_metric = str(m.get("val_metric", "loss"))
        for k in ("mode", "dim", "l2", "epochs", "batch_size", "lr", "alpha", "seed"):
            setattr(self, k, m[k])
        self.patience, self.history_, self.model = 2, m.get("history", []), None
        self._keras_path = Path(m["_stem"]).with_suffix(".keras")
        fix = "Rebuild it with `python -m music train --force`."
        if not self._keras_path.is_file():
            raise ArtifactError(f"{self._keras_path} is missing although its manifest exists. {fix}")
        if m.get("keras_checksum") and checksum_files([self._keras_path]) != m["keras_checksum"]:
            raise ArtifactError(f"{self._keras_path} does not match its manifest (changed or half-written). {fix}")
        self.P, self.Q, self.bu, self.bi = (arrays[k].astype(np.float32) for k in ("P", "Q", "bu", "bi"))
        self.mu = float(m.get("global_bias", 0.0))
        self.engine, self.engine_params = str(m.get("engine", "keras")), m.get("engine_params")
        self.Qn = self.Q / np.maximum(np.linalg.norm(self.Q, axis=1, keepdims=True), 1e-9)

    def keras_model(self) -> Any:
        """The saved Keras model itself (to fine-tune or inspect); loaded on first use."""
        if self.model is None:
            import music  # noqa: F401 - KERAS_BACKEND
            import keras

            # keras (and torch) load in seconds; serving a saved model scores with numpy alone
            from music.mf.layer import MFLayer

            fix = "Rebuild it with `python -m music train --force`."
            try:
                self.model = keras.saving.load_model(self._keras_path, custom_objects={"MFLayer": MFLayer},
                                                     compile=False)
            except Exception as exc:  # keras raises many types for a damaged zip
                raise ArtifactError(f"{self._keras_path} could not be loaded ({type(exc).__name__}: {exc}). "
                                    f"{fix}") from exc
        return self.model
