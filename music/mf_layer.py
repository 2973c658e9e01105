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
                 global_bias: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_users, self.n_items, self.dim, self.l2 = int(n_users), int(n_items), int(dim), float(l2)
        self.mode, self.global_bias = mode, float(global_bias)

    def build(self, input_shape: Any) -> None:
        init = keras.initializers.RandomNormal(stddev=0.05 if self.mode == "explicit" else 0.1, seed=7)
        self.P = self.add_weight(shape=(self.n_users, self.dim), initializer=init, name="user_factors")
        self.Q = self.add_weight(shape=(self.n_items, self.dim), initializer=init, name="item_factors")
        self.bu = self.add_weight(shape=(self.n_users,), initializer="zeros", name="user_bias")
        self.bi = self.add_weight(shape=(self.n_items,), initializer="zeros", name="item_bias")

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "int32")
        u = x[:, 0]
        pu = ops.take(self.P, u, axis=0)
        if self.mode == "softmax":
            # Users are regularised per example; items once per batch over the whole table.
            self.add_loss(self.l2 * (ops.mean(ops.sum(pu * pu, axis=1))
                                     + ops.sum(self.Q * self.Q) / self.n_items))
            return ops.matmul(pu, ops.transpose(self.Q)) + self.bi[None, :]
        qi = ops.take(self.Q, x[:, 1], axis=0)
        bi = ops.take(self.bi, x[:, 1], axis=0)
        if self.mode == "bpr":
            qj = ops.take(self.Q, x[:, 2], axis=0)
            bj = ops.take(self.bi, x[:, 2], axis=0)
            self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu + qi * qi + qj * qj, axis=1) + bi * bi + bj * bj))
            return ops.sum(pu * (qi - qj), axis=1) + bi - bj
        bu = ops.take(self.bu, u, axis=0)
        self.add_loss(self.l2 * ops.mean(ops.sum(pu * pu + qi * qi, axis=1) + bu * bu + bi * bi))
        return ops.sum(pu * qi, axis=1) + bu + bi + self.global_bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_users": self.n_users, "n_items": self.n_items, "dim": self.dim,
                "l2": self.l2, "mode": self.mode, "global_bias": self.global_bias}


