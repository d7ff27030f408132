"""Callbacks that drive mask updates from `model.fit` and record sparsity."""

import json
import os

import keras
from keras import ops

from keras_prune.engine.fit_state import make_variables_current
from keras_prune.graph.groups import (
    couple_channel_masks,
    hold_masked_channels,
    update_channel_masks,
)
from keras_prune.pruning.prune_strip import find_wrappers

JAX_CHANNEL_MESSAGE = (
    "Layer {name!r} prunes whole channels with a binary mask, which kp.PruningCallback does not "
    "train on the JAX backend yet: holding the BatchNormalization scales of removed channels at "
    "zero needs variable constraints that JAX's `fit` cannot run. Use unstructured, block or "
    "N:M granularity (or mask='learnable') on JAX, or train with KERAS_BACKEND=tensorflow or "
    "torch; kp.prune_channels and kp.shrink work on JAX."
)


def check_trainable_on_jax(wrappers):
    """Raise if a wrapper prunes at a granularity that training on JAX does not support."""
    from keras_prune.core.granularity import Channel

    if keras.backend.backend() != "jax":
        return
    for wrapper in wrappers:
        if isinstance(wrapper.granularity, Channel) and not wrapper.mask_type.learnable:
            raise NotImplementedError(JAX_CHANNEL_MESSAGE.format(name=wrapper.name))


def realised_sparsity(wrappers):
    """Fraction of zero mask entries over all pruned weights of `wrappers` (0.0 if none)."""
    total = zeros = 0
    for wrapper in wrappers:
        for mask in wrapper.masks if wrapper.built else []:
            size = int(ops.size(mask))
            total += size
            zeros += size - int(ops.convert_to_numpy(ops.sum(mask)))
    return zeros / total if total else 0.0


def layer_sparsity(wrapper):
    """Realised sparsity of one wrapper's masks."""
    return realised_sparsity([wrapper])


def steps_per_batch_call(model):
    """Optimizer steps between two batch hooks: Keras calls them once per `steps_per_execution`.

    Read once per `fit`: touching `callback.model` in every batch would, on JAX, make Keras sync
    the whole training state each step.
    """
    steps = getattr(model, "steps_per_execution", 1)
    return steps if isinstance(steps, int) and steps > 0 else 1


class StepWindows:
    """Which optimizer steps each call of the batch hooks stands for.

    With `steps_per_execution=k` Keras runs k steps per call and calls `on_train_batch_begin`
    only before the first of them. Something due at any of those steps is done at the start of
    the call, so no scheduled update is skipped. Steps a longer call than expected left out are
    caught up at the next call; none is looked at twice.
    """

    def __init__(self, steps_per_call=1, steps_per_epoch=None):
        self.steps_per_call = steps_per_call
        self.steps_per_epoch = steps_per_epoch
        self.epoch_start = 0
        self.checked_through = None

    def start_epoch(self, iterations):
        """Record the optimizer's step count at the start of an epoch."""
        self.epoch_start = iterations
        if self.checked_through is None:
            self.checked_through = iterations - 1

    def steps(self, batch):
        """The steps not yet looked at up to the end of the call starting at `batch`."""
        first = self.epoch_start + batch
        if self.checked_through is None:  # no epoch start was seen
            self.checked_through = first - 1
        end = first + self.steps_per_call
        if self.steps_per_epoch:  # the epoch's last call may run fewer steps
            end = min(end, self.epoch_start + self.steps_per_epoch)
        window = range(max(self.checked_through + 1, 0), max(end, first + 1))
        self.checked_through = max(self.checked_through, window[-1] if window else first)
        return window


def latest_due_step(schedule, steps):
    """The last of `steps` at which `schedule` updates masks, or None."""
    return next((step for step in reversed(steps) if schedule.should_update(step)), None)


def wrappers_or_raise(model, caller, how="kp.prune(model, schedule=...)"):
    """The model's wrappers; raises naming `caller` and the fix (`how`) if it has none."""
    wrappers = find_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"{caller} found no kp.PruneWrapper in model {model.name!r}. Make the model prunable "
            f"first: `model = {how}`."
        )
    return wrappers


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningCallback(keras.callbacks.Callback):
    """Updates masks as the schedules say, before each training batch, and logs `sparsity`.

    Args:
        allocation: how the scheduled sparsity is spread across layers: None (each tensor at
            the scheduled sparsity) or a `kp.allocation.Allocation` such as
            `kp.GlobalAllocation()` (one ranking across all layers).
        calibration_data: `(x, y)` on which gradients are collected before each mask update,
            for gradient criteria ("taylor", "fisher", ...); see `kp.collect_gradients`.
        calibration_batch_size: batch size for that collection.

    The step is the optimizer's iteration count, so a model saved mid-training and reloaded
    continues its schedule where it stopped. `sparsity` (fraction of pruned weights that are zero)
    is written into `logs`, so the progress bar and `History` show it.

    Example:

    ```python
    pruned.fit(x, y, epochs=3, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(self, allocation=None, calibration_data=None, calibration_batch_size=32):
        super().__init__()
        from keras_prune.core import allocation as allocation_lib

        self.allocation = None if allocation is None else allocation_lib.get(allocation)
        if calibration_data is not None and (
            not isinstance(calibration_data, (tuple, list)) or len(calibration_data) != 2
        ):
            raise ValueError(
                "Expected `calibration_data` to be a pair `(x, y)` of arrays. "
                f"Received: calibration_data of type {type(calibration_data).__name__}"
            )
        self.calibration_data = calibration_data
        self.calibration_batch_size = calibration_batch_size
        self._wrappers = []
        self._unbuilt = []
        self._windows = StepWindows()
        self._step = 0
        self._sparsity = 0.0

    def on_train_begin(self, logs=None):
        self._wrappers = wrappers_or_raise(self.model, type(self).__name__)
        check_trainable_on_jax(self._wrappers)
        if getattr(self.model, "optimizer", None) is None:
            raise ValueError(
                "PruningCallback reads the step from the optimizer: compile the model first."
            )
        for wrapper in self._wrappers:
            wrapper.mask_updates_attached = True
        self._windows = StepWindows(
            steps_per_batch_call(self.model), (self.params or {}).get("steps")
        )
        hold_masked_channels(self.model, self._wrappers)
        self._sparsity = realised_sparsity(self._wrappers)

    def on_epoch_begin(self, epoch, logs=None):
        # Read the device counter once per epoch and take steps from the batch index in
        # between: a device read per batch costs more than a small model's whole training step.
        self._windows.start_epoch(int(ops.convert_to_numpy(self.model.optimizer.iterations)))

    def on_train_batch_begin(self, batch, logs=None):
        steps = self._windows.steps(batch)
        self._step = steps[-1] if len(steps) else self._windows.epoch_start + batch
        # Subclassed models build their layers inside the first batch: catch up after it.
        self._unbuilt = [wrapper for wrapper in self._wrappers if not wrapper.built]
        due = {}
        for wrapper in self._wrappers:
            step = latest_due_step(wrapper.schedule, steps) if wrapper.built else None
            if step is not None:
                due.setdefault(step, []).append(wrapper)
        if not due:
            return
        make_variables_current(self.model, [w for group in due.values() for w in group])
        updated = False
        for step in sorted(due):
            self._collect_gradients_if_due(due[step])
            updated = bool(self._update(due[step], step)) or updated
        if updated:
            self._sparsity = realised_sparsity(self._wrappers)

    def _update(self, wrappers, step):
        if self.allocation is None:
            return update_channel_masks(self.model, step, wrappers)
        updated = self.allocation.update(wrappers, step)
        if updated:
            couple_channel_masks(self.model, self._wrappers)
        return updated

    def _collect_gradients_if_due(self, wrappers):
        """Refresh gradient statistics before an update that ranks by gradients."""
        if self.calibration_data is not None and any(
            wrapper.criterion.needs_gradients for wrapper in wrappers
        ):
            from keras_prune.core.criteria import collect_gradients

            x, y = self.calibration_data
            collect_gradients(self.model, x, y, batch_size=self.calibration_batch_size)

    def on_train_batch_end(self, batch, logs=None):
        if self._unbuilt:
            make_variables_current(self.model)
            for wrapper in self._unbuilt:
                wrapper.update_mask(self._step)
            self._unbuilt = []
            self._sparsity = realised_sparsity(self._wrappers)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def on_epoch_end(self, epoch, logs=None):
        # Keras has synced the state by now; on JAX this zeroes what the masks remove, so
        # checkpoints written at the end of the epoch are sparse.
        make_variables_current(self.model, self._wrappers)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def on_train_end(self, logs=None):
        make_variables_current(self.model, self._wrappers)

    def get_config(self):
        # calibration_data are arrays, not configuration: pass them again after loading.
        return {
            "allocation": None
            if self.allocation is None
            else keras.saving.serialize_keras_object(self.allocation),
            "calibration_batch_size": self.calibration_batch_size,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class UpdatePruningStep(PruningCallback):
    """tfmot's name for `PruningCallback`; same behaviour.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.UpdatePruningStep()])
    ```
    """


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningSummaries(keras.callbacks.Callback):
    """Records per-layer sparsity at the end of every epoch.

    Adds `sparsity/<layer>` to the epoch logs, so Keras' own `TensorBoard` callback (placed after
    this one) plots it, keeps the history in `self.history` (`{layer: [(step, sparsity), ...]}`)
    and, with `log_dir`, appends one JSON line per epoch to `log_dir/pruning_summaries.jsonl`.

    Args:
        log_dir: directory for the JSON-lines file; None keeps the history in memory only.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.PruningCallback(), kp.PruningSummaries("logs"),
                                keras.callbacks.TensorBoard("logs")])
    ```
    """

    def __init__(self, log_dir=None):
        super().__init__()
        self.log_dir = log_dir
        self.history = {}

    def on_train_begin(self, logs=None):
        wrappers_or_raise(self.model, type(self).__name__)
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        record = {"epoch": epoch, "step": step, "layers": {}}
        for wrapper in find_wrappers(self.model):
            sparsity = layer_sparsity(wrapper)
            self.history.setdefault(wrapper.name, []).append((step, sparsity))
            record["layers"][wrapper.name] = sparsity
            if logs is not None:
                logs[f"sparsity/{wrapper.name}"] = sparsity
        if self.log_dir is not None:
            with open(os.path.join(self.log_dir, "pruning_summaries.jsonl"), "a") as file:
                file.write(json.dumps(record) + "\n")

    def get_config(self):
        return {"log_dir": self.log_dir}
