"""`PruningSummaries`: per-layer sparsity into `logs`, TensorBoard and JSON lines."""

import json
import os

import keras
from keras import ops

from keras_prune.engine.engine import realised_sparsity, wrappers_or_raise
from keras_prune.layers.wrapper import find_wrappers


def layer_sparsity(wrapper):
    """Realised sparsity of one wrapper's pruned weights."""
    return realised_sparsity([wrapper])


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
