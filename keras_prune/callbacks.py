"""Callbacks that drive mask updates from `model.fit` and record sparsity."""

import json
import os

import keras
from keras import ops

from keras_prune.groups import hold_masked_channels, update_channel_masks
from keras_prune.pruning import find_wrappers

JAX_MESSAGE = (
    "kp.PruningCallback does not support the JAX backend yet: JAX's `fit` keeps the model's "
    "state outside its variables between epochs, so masks changed by a callback mid-epoch "
    "would be lost. Train with KERAS_BACKEND=tensorflow or torch (masks, saving and strip are "
    "backend-neutral; a model pruned there loads and runs on JAX)."
)


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


def _wrappers_or_raise(model, caller):
    wrappers = find_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"{caller} found no kp.PruneWrapper in model {model.name!r}. Make the model prunable "
            "first: `model = kp.prune(model, schedule=...)`."
        )
    return wrappers


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningCallback(keras.callbacks.Callback):
    """Updates masks as the schedules say, before each training batch, and logs `sparsity`.

    The step is the optimizer's iteration count, so a model saved mid-training and reloaded
    continues its schedule where it stopped. `sparsity` (fraction of pruned weights that are zero)
    is written into `logs`, so the progress bar and `History` show it.

    Example:

    ```python
    pruned.fit(x, y, epochs=3, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._unbuilt = []
        self._step = 0
        self._sparsity = 0.0

    def on_train_begin(self, logs=None):
        if keras.backend.backend() == "jax":
            raise NotImplementedError(JAX_MESSAGE)
        self._wrappers = _wrappers_or_raise(self.model, type(self).__name__)
        if getattr(self.model, "optimizer", None) is None:
            raise ValueError(
                "PruningCallback reads the step from the optimizer: compile the model first."
            )
        for wrapper in self._wrappers:
            wrapper.mask_updates_attached = True
        hold_masked_channels(self.model, self._wrappers)
        self._sparsity = realised_sparsity(self._wrappers)

    def on_epoch_begin(self, epoch, logs=None):
        # Read the device counter once per epoch and count batches in Python in between: a
        # device read per batch costs more than a small model's whole training step.
        self._step = int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        # Subclassed models build their layers inside the first batch: catch up after it.
        self._unbuilt = [wrapper for wrapper in self._wrappers if not wrapper.built]
        built = [wrapper for wrapper in self._wrappers if wrapper.built]
        if update_channel_masks(self.model, self._step, built):
            self._sparsity = realised_sparsity(self._wrappers)

    def on_train_batch_end(self, batch, logs=None):
        if self._unbuilt:
            for wrapper in self._unbuilt:
                wrapper.update_mask(self._step)
            self._unbuilt = []
            self._sparsity = realised_sparsity(self._wrappers)
        self._step += self._steps_per_batch_call()
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def _steps_per_batch_call(self):
        # With `steps_per_execution=k`, Keras calls batch hooks once per k optimizer steps.
        steps = getattr(self.model, "steps_per_execution", 1)
        return steps if isinstance(steps, int) and steps > 0 else 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def get_config(self):
        return {}


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
        _wrappers_or_raise(self.model, type(self).__name__)
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
