"""`PruningSummaries`: per-layer sparsity into `logs`, TensorBoard and JSON lines."""

import json
import os

import keras
from keras import ops

from keras_prune.engine.engine import realised_sparsity, wrappers_or_warn
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers


def layer_sparsity(wrapper):
    """Realised sparsity of one wrapper's pruned weights."""
    if not isinstance(wrapper, PruneWrapper):
        raise TypeError(
            f"Expected `wrapper` to be a kp.PruneWrapper. Received: wrapper={wrapper!r} "
            f"(of type {type(wrapper).__name__}); prune its model with kp.prune first."
        )
    return realised_sparsity([wrapper])


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningSummaries(keras.callbacks.Callback):
    """Records per-layer sparsity at the end of every epoch.

    Adds `sparsity/<layer>` to the epoch logs, so Keras' own `TensorBoard` callback (placed after
    this one) plots it, keeps the history in `self.history` (`{layer: [(step, sparsity), ...]}`)
    and, with `log_dir`, appends one JSON line per new step to `log_dir/pruning_summaries.jsonl`.
    Driven by hand outside `fit` (tfmot's custom-loop recipe calls `on_epoch_begin(epoch=-1)`),
    it records at each `on_epoch_begin`, as tfmot does.

    Args:
        log_dir: directory for the JSON-lines file (a non-empty path); None keeps the history
            in memory only.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.PruningCallback(), kp.callbacks.PruningSummaries("logs")])
    ```
    """

    def __init__(self, log_dir=None):
        super().__init__()
        if log_dir is not None and (
            not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir)
        ):
            raise ValueError(
                "Expected `log_dir` to be a non-empty directory path, or None to keep the "
                f"history in memory only. Received: log_dir={log_dir!r}"
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.history = {}
        self._last_step = None

    def on_train_begin(self, logs=None):
        wrappers_or_warn(self.model, type(self).__name__)
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        if not self.params:  # driven by hand: `fit` sets `params`
            self._record(epoch)

    def on_epoch_end(self, epoch, logs=None):
        for name, sparsity in self._record(epoch).items():
            if logs is not None:
                logs[f"sparsity/{name}"] = sparsity

    def _record(self, epoch):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        layers = {wrapper.name: layer_sparsity(wrapper) for wrapper in find_wrappers(self.model)}
        if step == self._last_step:
            return layers
        self._last_step = step
        for name, sparsity in layers.items():
            self.history.setdefault(name, []).append((step, sparsity))
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            record = {"epoch": epoch, "step": step, "layers": layers}
            with open(os.path.join(self.log_dir, "pruning_summaries.jsonl"), "a") as file:
                file.write(json.dumps(record) + "\n")
        return layers

    def get_config(self):
        return {"log_dir": self.log_dir}

    @classmethod
    def from_config(cls, config):
        """The callback `get_config` described (Keras callbacks have no `from_config`)."""
        return cls(**config)
