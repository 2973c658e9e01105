"""One ``Split`` type for every music evaluation: who may train on what, and what is held out.

Why one type: the rating, top-N and "up next" evaluations all answer the same question (which data
may a model learn from, which data scores it), and a reviewer checking for leakage should have to
read one definition. A split of an interaction table fills ``train``/``test`` (and optionally
``val``) frames; a split of basket sequences fills per-user basket positions: ``train_upto[u]``
baskets train, the validation target is basket ``val_at[u]`` and the test target basket
``test_at[u]`` (-1 where the user has none). The sequence splits themselves are built in
``music.next.data`` (``leave_last_out``, ``global_time``), the interaction splits here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Split:
    """What trains and what is held out, for an interaction table or for basket sequences."""

    train: pd.DataFrame | None = None
    test: pd.DataFrame | None = None
    how: str = ""
    seed: int = 0
    val: pd.DataFrame | None = None
    #: basket sequences: baskets [0, train_upto[u]) of user u are training data
    train_upto: np.ndarray | None = None
    #: basket index of user u's validation / test target (-1: none)
    val_at: np.ndarray | None = None
    test_at: np.ndarray | None = None
    #: details of how the cut was made (e.g. the cut-off times of a global-time split)
    info: dict[str, Any] | None = None

    @property
    def val_users(self) -> np.ndarray:
        """Users with a validation target basket."""
        return np.flatnonzero(self.val_at >= 0).astype(np.int64) if self.val_at is not None else np.zeros(0, np.int64)

    @property
    def test_users(self) -> np.ndarray:
        """Users with a test target basket."""
        return np.flatnonzero(self.test_at >= 0).astype(np.int64) if self.test_at is not None else np.zeros(0, np.int64)

    def at(self, stage: str) -> np.ndarray:
        """Target basket index per user for ``stage`` ("val" or "test")."""
        if stage not in ("val", "test"):
            raise ValueError(f"stage must be 'val' or 'test', not {stage!r}")
        at = self.val_at if stage == "val" else self.test_at
        if at is None:
            raise ValueError(f"the {self.how or 'interaction'} split has no basket targets")
        return at


def ratio_split(frame: pd.DataFrame, *, test_size: float = 0.2, seed: int = 42) -> Split:
    """Fixed, seeded random split of rows (the classic 80/20 for rating prediction).

    Test rows whose user or item never occurs in train are kept: models must predict them with
    their fallback (biases/global mean), as Surprise does, so the comparison stays on one split.
    """
    rng = np.random.default_rng(seed)
    mask = rng.random(len(frame)) < test_size
    return Split(frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True), f"ratio{test_size}", seed)


def user_holdout_split(
    frame: pd.DataFrame, *, test_fraction: float = 0.2, min_items: int = 5, seed: int = 42
) -> Split:
    """Per-user holdout for top-N: each user with ≥ ``min_items`` items gives ``test_fraction`` of them.

    Why per user: every evaluated user keeps history in train, and the test items are never seen
    in training for that user (no leak); users with too little history stay wholly in train.
    """
    rng = np.random.default_rng(seed)
    r = rng.random(len(frame))
    f = frame.assign(_r=r)
    f["_rank"] = f.groupby("user")["_r"].rank(method="first")
    f["_n"] = f.groupby("user")["user"].transform("size")
    n_test = np.maximum(1, np.floor(f["_n"] * test_fraction)).astype(int)
    is_test = (f["_n"] >= min_items) & (f["_rank"] <= n_test)
    cols = list(frame.columns)
    return Split(f.loc[~is_test, cols].reset_index(drop=True), f.loc[is_test, cols].reset_index(drop=True),
                 f"user_holdout{test_fraction}", seed)


def period_starts(times: np.ndarray, *, val_share: float = 0.1, test_share: float = 0.1,
                  snap: str | None = None) -> tuple[int, int]:
    """``(T_val, T_test)``: the unix times where the latest ``val_share + test_share`` and ``test_share`` of ``times`` begin.

    ``snap`` = ``"month"`` (``"day"``) moves both back to the start of their calendar month (day), so
    that month (day) baskets never straddle a cut. Used by the global-time split of "up next" and to
    date the test period whose tags must not feed genres.
    """
    t = np.asarray(times, dtype=np.int64)
    if len(t) == 0:
        raise ValueError("no timestamps to cut")
    t_val = _snap(int(np.quantile(t, 1.0 - val_share - test_share, method="lower")), snap)
    t_test = _snap(int(np.quantile(t, 1.0 - test_share, method="lower")), snap)
    if val_share > 0 and t_test <= t_val:
        raise ValueError(f"the validation and test periods overlap (T_val {t_val}, T_test {t_test}); "
                         "use larger shares or finer baskets")
    return t_val, t_test


def _snap(t: int, unit: str | None) -> int:
    ts = pd.Timestamp(t, unit="s", tz="UTC")
    if unit == "month":
        ts = ts.normalize().replace(day=1)
    elif unit == "day":
        ts = ts.normalize()
    return int(ts.timestamp())
