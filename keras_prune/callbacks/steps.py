"""Which optimizer steps a batch hook stands for, read cheaply (`steps_per_execution` aware).

Keras calls `on_train_batch_begin` once per `steps_per_execution` steps. The pruning callbacks
read the optimizer's step counter once per epoch and take steps from the batch index in between
(a device read per batch costs more than a small model's whole training step), so an update due
at any step of a multi-step call happens at its start and none is skipped.
"""

import keras
from keras import ops

from keras_prune.core import validation
from keras_prune.core.schedules import decide
from keras_prune.engine.fit_state import make_variables_current


def steps_per_batch_call(model):
    """Optimizer steps between two batch hooks: Keras calls them once per `steps_per_execution`.

    Read once per `fit`: touching `callback.model` in every batch would, on JAX, make Keras sync
    the whole training state each step.
    """
    steps = getattr(model, "steps_per_execution", 1)
    return steps if isinstance(steps, int) and steps > 0 else 1


class StepWindows:
    """Which steps each call of the batch hooks stands for.

    With `steps_per_execution=k` Keras runs k steps per call and calls `on_train_batch_begin`
    only before the first of them. Something due at any of those steps is done at the start of
    the call, so no scheduled update is skipped. Steps a longer call than expected left out are
    caught up at the next call; none is looked at twice.

    Args:
        steps_per_call: optimizer steps per call of the batch hooks.
        steps_per_epoch: steps in an epoch (`fit`'s `params["steps"]`), or None if unknown.
        first_step: the number of the first batch after `iterations` optimizer steps, minus
            `iterations`: 1 for pruning steps, which count batches from 1 as tfmot does (the
            k-th batch updates masks with step k), 0 for plain optimizer steps.

    Driven by hand with `batch=-1` (tfmot's custom training loop recipe), each call stands for
    the next step.
    """

    def __init__(self, steps_per_call=1, steps_per_epoch=None, first_step=0):
        self.steps_per_call = validation.check_int("steps_per_call", steps_per_call, minimum=1)
        if steps_per_epoch is not None:
            steps_per_epoch = validation.check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        self.steps_per_epoch = steps_per_epoch
        self.first_step = validation.check_int("first_step", first_step, minimum=0)
        self.epoch_start = 0
        self.checked_through = None

    def start_training(self, iterations):
        """Record the optimizer's step count when training starts."""
        self.epoch_start = iterations
        self.checked_through = iterations + self.first_step - 1

    def start_epoch(self, iterations):
        """Record the optimizer's step count at the start of an epoch."""
        self.epoch_start = iterations
        if self.checked_through is None:
            self.checked_through = iterations + self.first_step - 1

    def steps(self, batch):
        """The steps not yet looked at up to the end of the call starting at `batch`."""
        if batch is None or batch < 0:
            following = (self.checked_through if self.checked_through is not None else -1) + 1
            self.checked_through = following
            return range(following, following + 1)
        first = self.epoch_start + batch + self.first_step
        if self.checked_through is None:  # no epoch start was seen
            self.checked_through = first - 1
        end = first + self.steps_per_call
        if self.steps_per_epoch:  # the epoch's last call may run fewer steps
            end = min(end, self.epoch_start + self.steps_per_epoch + self.first_step)
        window = range(max(self.checked_through + 1, 0), max(end, first + 1))
        self.checked_through = max(self.checked_through, window[-1] if window else first)
        return window


def latest_due_step(schedule, steps):
    """The last of `steps` at which `schedule` updates masks, or None."""
    return next((step for step in reversed(steps) if decide(schedule, step)[0]), None)


class StepCounter(keras.callbacks.Callback):
    """Knows the optimizer steps of each batch call, reading the device counter once per epoch
    (a read per batch costs more than a small model's whole training step), as
    `kp.PruningCallback` does; see `StepWindows` for `steps_per_execution`.

    Subclasses set `self._wrappers` in `on_train_begin`, get their steps from
    `self._steps(batch)` and call `self._make_current()` before they read or change weights
    mid-epoch (see `keras_prune.engine.fit_state`).
    """

    _wrappers = ()
    _windows = None

    @classmethod
    def from_config(cls, config):
        """The callback `get_config` described (Keras callbacks have no `from_config`)."""
        return cls(**config)

    def on_epoch_begin(self, epoch, logs=None):
        if self._windows is None:
            self._windows = StepWindows(
                steps_per_batch_call(self.model), (self.params or {}).get("steps")
            )
        self._windows.start_epoch(int(ops.convert_to_numpy(self.model.optimizer.iterations)))

    def _steps(self, batch):
        return self._windows.steps(batch)

    def _make_current(self):
        make_variables_current(self.model, self._wrappers)

    def on_epoch_end(self, epoch, logs=None):
        self._make_current()

    def on_train_end(self, logs=None):
        self._make_current()
        self._windows = None
