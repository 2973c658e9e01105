"""What every trainer shares: refusing data it cannot learn from, and stopping when the loss stops being a number.

Why here: five trainers (music MF and next-item on Keras, the fashion and product projections and the hashtag
decoder on torch) each used to finish "successfully" on a loss of NaN and save factors full of NaN, so the app
then recommended nothing without saying why. Each trainer now checks its loss with ``check_loss`` (or the Keras
callback from ``keras_loss_guard``) and writes its artifact only after a run that stayed finite: a diverged run
raises ``TrainingDiverged`` and leaves nothing behind.
"""

from __future__ import annotations

import math
from typing import Any, Optional

#: A loss this many times above the run's first finite loss is exploding: stop before it becomes inf.
EXPLODE_FACTOR = 1e4


class BadTrainingData(ValueError):
    """The data cannot train a useful model (too small, constant, out of range); the message says what to fix."""


class TrainingDiverged(ValueError):
    """The loss became NaN / infinite or exploded; nothing was saved. The message names the trainer and the step."""


def check_loss(loss: Any, what: str, step: str, first: Optional[float] = None) -> float:
    """``loss`` as a float, or ``TrainingDiverged`` when it is not finite or passed ``EXPLODE_FACTOR`` × ``first``."""
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingDiverged(f"{what} training diverged at {step} (loss {value}); nothing was saved. "
                               "Check the data for extreme values or lower the learning rate.")
    if first is not None and math.isfinite(first) and value > EXPLODE_FACTOR * max(abs(first), 1e-3):
        raise TrainingDiverged(f"{what} training exploded at {step} (loss {value:.3g}, first {first:.3g}); "
                               "nothing was saved. Check the data for extreme values or lower the learning rate.")
    return value


def check_finite_arrays(what: str, **arrays: Any) -> None:
    """``TrainingDiverged`` when a trained array holds NaN or infinity (checked before anything is written)."""
    import numpy as np  # numpy is everywhere; imported here to keep this module's import free

    for name, array in arrays.items():
        if array is not None and not np.isfinite(np.asarray(array, dtype=np.float64)).all():
            raise TrainingDiverged(f"{what} training produced non-finite values in {name}; nothing was saved.")


def keras_loss_guard(what: str) -> Any:
    """A Keras callback that raises ``TrainingDiverged`` as soon as a batch's loss is non-finite or exploding.

    Raising (instead of Keras' ``TerminateOnNaN``, which only sets ``stop_training``) is what keeps the caller
    from saving: the exception leaves ``fit`` and the trainer's save is never reached. A trainer that calls
    ``fit`` once per epoch passes the same callback every time: it keeps the first loss and counts the epochs.
    """
    import keras  # the torch-only trainers never import Keras

    class LossGuard(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.first: Optional[float] = None
            self.epochs_done = 0

        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            self.epochs_done += 1

        def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
            if logs and "loss" in logs:
                step = f"epoch {self.epochs_done + 1}, batch {batch + 1}"
                value = check_loss(logs["loss"], what, step, self.first)
                if self.first is None:
                    self.first = value

    return LossGuard()
