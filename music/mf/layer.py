"""The Keras layer of the matrix factorisation (imported only to train or to load the ``.keras`` file).

Why its own module: serving reads the factors from plain arrays, so the tab and the CLI's
``recommend`` never pay for importing keras and torch; only this module needs them.
"""

from __future__ import annotations

from typing import Any

import music  # noqa: F401 - sets KERAS_BACKEND before keras is imported
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="music")
class MFLayer(keras.layers.Layer):
    """Holds P (users × d), Q (items × d), user and item biases; three call modes (see module doc)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, l2: float = 1e-4, mode: str = "explicit",
                 global_bias: float = 0.0, n_sampled: int = 0, seed: int = 0, svdpp: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_users, self.n_items, self.dim, self.l2 = int(n_users), int(n_items), int(dim), float(l2)
        self.mode, self.global_bias, self.n_sampled, self.seed = mode, float(global_bias), int(n_sampled), int(seed)
        self.seed_gen = keras.random.SeedGenerator(seed)
        self.svdpp = bool(svdpp) and mode == "explicit"

    def build(self, input_shape: Any) -> None:
        init = keras.initializers.RandomNormal(stddev=0.05 if self.mode == "explicit" else 0.1, seed=7)
        self.P = self.add_weight(shape=(self.n_users, self.dim), initializer=init, name="user_factors")
        self.Q = self.add_weight(shape=(self.n_items, self.dim), initializer=init, name="item_factors")
        # A user bias shifts all of a user's scores equally: only ratings (explicit) can learn it.
        self.bu = self.add_weight(shape=(self.n_users,), initializer="zeros", name="user_bias",
                                  trainable=self.mode == "explicit")
        self.bi = self.add_weight(shape=(self.n_items,), initializer="zeros", name="item_bias")
        if self.mode == "wmf":
            # 1/|items of u| and 1/|users of i|: spread the whole-catalog term and the L2 over examples.
            self.inv_nu = self.add_weight(shape=(self.n_users,), initializer="zeros", name="inv_nu", trainable=False)
            self.inv_ni = self.add_weight(shape=(self.n_items,), initializer="zeros", name="inv_ni", trainable=False)
        if self.svdpp:
            # SVD++ (Koren 2008): who rated what, N(u), is itself evidence of taste. N holds each
            # user's training items scaled by |N(u)|^-1/2 (set once by the trainer; never test items).
            self.Y = self.add_weight(shape=(self.n_items, self.dim), initializer=init, name="implicit_factors")
            self.N = self.add_weight(shape=(self.n_users, self.n_items), initializer="zeros", name="rated",
                                     trainable=False)

    def user_vectors(self, u: Any) -> Any:
        """p_u, plus |N(u)|^-1/2 Σ_{j∈N(u)} y_j with SVD++."""
        pu = ops.take(self.P, u, axis=0)
        if self.svdpp:
            pu = pu + ops.matmul(ops.take(self.N, u, axis=0), self.Y)
        return pu

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = ops.cast(x, "int32")
        u = x[:, 0]
        pu = self.user_vectors(u)
        if self.mode == "softmax":
            return self._softmax_logits(pu, x[:, 1], bool(training))
        if self.mode == "wmf":
            return self._wmf_terms(u, pu, x[:, 1])
        qi = ops.take(self.Q, x[:, 1], axis=0)
        bi = ops.take(self.bi, x[:, 1], axis=0)
        if self.mode == "bpr":
            qj = ops.take(self.Q, x[:, 2], axis=0)
            bj = ops.take(self.bi, x[:, 2], axis=0)
            self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu + qi * qi + qj * qj, axis=1) + bi * bi + bj * bj))
            return ops.sum(pu * (qi - qj), axis=1) + bi - bj
        bu = ops.take(self.bu, u, axis=0)
        self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu + qi * qi, axis=1) + bu * bu + bi * bi))
        if self.svdpp:
            self.add_loss(self.l2 * ops.sum(self.Y * self.Y) / self.n_users)
        return ops.sum(pu * qi, axis=1) + bu + bi + self.global_bias

    def _softmax_logits(self, pu: Any, pos: Any, training: bool) -> Any:
        """Column 0: the played item's logit; then the negatives (target is always class 0).

        In training with ``n_sampled`` < catalog size, the negatives are ``n_sampled`` items drawn
        uniformly per batch and shared by its rows (a sampled softmax: ~9× cheaper on Last.fm-2K's
        17.6k artists); otherwise, and always in evaluation, every item is a negative. The played
        item is masked out of its own negatives.
        """
        qp = ops.take(self.Q, pos, axis=0)
        pos_logit = ops.sum(pu * qp, axis=1) + ops.take(self.bi, pos, axis=0)
        if training and 0 < self.n_sampled < self.n_items:
            cands = keras.random.randint((self.n_sampled,), 0, self.n_items, seed=self.seed_gen, dtype="int32")
        else:
            cands = ops.arange(self.n_items, dtype="int32")
        neg = ops.matmul(pu, ops.transpose(ops.take(self.Q, cands, axis=0))) + ops.take(self.bi, cands, axis=0)[None, :]
        neg = ops.where(ops.equal(cands[None, :], pos[:, None]), -1e9, neg)
        self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu + qp * qp, axis=1)))
        return ops.concatenate([pos_logit[:, None], neg], axis=1)

    def _wmf_terms(self, u: Any, pu: Any, i: Any) -> Any:
        """Per-example pieces of the weighted MF (iALS) objective, stacked as (score, catalog term).

        Full objective: Σ_observed c·(1 − s)² + Σ_unobserved s² + λ‖·‖², with s = p_u·q_i + b_i.
        Rewritten
        as Σ_observed [c·(1 − s)² − s²] + Σ_u Σ_all-items s², where the last sum is p̃_u ᵀ G p̃_u with
        G = Q̃ᵀQ̃ (d+1 × d+1, the bias as an extra coordinate), so no negative needs sampling. Each example
        carries 1/|items of u| of its user's catalog term; ``wmf_loss`` finishes the sum.
        """
        ones = ops.ones_like(pu[:, :1])
        pt = ops.concatenate([pu, ones], axis=1)
        qt_all = ops.concatenate([self.Q, self.bi[:, None]], axis=1)
        qt = ops.take(qt_all, i, axis=0)
        gram = ops.matmul(ops.transpose(qt_all), qt_all)
        s = ops.sum(pt * qt, axis=1)
        cat = ops.sum(ops.matmul(pt, gram) * pt, axis=1) * ops.take(self.inv_nu, u, axis=0)
        qi = ops.take(self.Q, i, axis=0)
        self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu, axis=1) * ops.take(self.inv_nu, u, axis=0)
                                         + ops.sum(qi * qi, axis=1) * ops.take(self.inv_ni, i, axis=0)))
        return ops.stack([s, cat], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_users": self.n_users, "n_items": self.n_items, "dim": self.dim,
                "l2": self.l2, "mode": self.mode, "global_bias": self.global_bias, "n_sampled": self.n_sampled,
                "seed": self.seed, "svdpp": self.svdpp}




@keras.saving.register_keras_serializable(package="music")
def wmf_loss(confidence: Any, terms: Any) -> Any:
    """c·(1 − s)² − s² + (this example's share of Σ_all s²); ``confidence`` rides in y_true."""
    c = ops.reshape(ops.cast(confidence, terms.dtype), (-1,))
    s, cat = terms[:, 0], terms[:, 1]
    return c * ops.square(1.0 - s) - ops.square(s) + cat
