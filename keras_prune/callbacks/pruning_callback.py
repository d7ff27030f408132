"""`PruningCallback`: drives the mask engine from `model.fit`, step for step like tfmot."""

import keras
from keras import ops

from keras_prune.callbacks.steps import StepWindows, latest_due_step, steps_per_batch_call
from keras_prune.core import allocation as allocation_lib
from keras_prune.core import validation
from keras_prune.engine.engine import (
    engine_for,
    is_follower,
    sparsity_of,
    wrappers_or_warn,
    zero_counts,
)
from keras_prune.engine.fit_state import make_variables_current
from keras_prune.engine.gradients import check_calibration_data, collect_gradients


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningCallback(keras.callbacks.Callback):
    """Updates masks as the schedules say, before each training batch, and logs `sparsity`.

    Args:
        allocation: how the scheduled sparsity is spread across layers: None (default) or
            "auto" follows what the model declares (`kp.prune(allocation=...)`: a global
            ranking with per-tensor floors for binary unstructured masks unless told
            otherwise); a `kp.allocation.Allocation` or name ("per_layer", "global", ...)
            overrides it for every layer.
        calibration_data: `(x, y)` (or a dataset) on which gradients are collected before
            each mask update, for gradient criteria ("taylor", "fisher", ...); see
            `kp.engine.collect_gradients`.
        calibration_batch_size: batch size for that collection.

    Steps follow tfmot: the k-th training batch counts as step k (the optimizer's iteration
    count before the batch, plus one), so schedules update masks at the same batches as
    tfmot's `UpdatePruningStep`, and a model saved mid-training and reloaded continues its
    schedule where it stopped. Driven by hand in a custom training loop (tfmot's recipe:
    `on_train_begin()`, then `on_train_batch_begin(batch=-1)` before every step and
    `on_epoch_end(batch=-1)`), each batch call is the next step. `sparsity` (the fraction of
    pruned weights that are zero) is written into `logs`, so the progress bar and `History`
    show it.

    Example:

    ```python
    pruned.fit(x, y, epochs=3, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(self, allocation=None, calibration_data=None, calibration_batch_size=32):
        super().__init__()

        # "auto" is what `kp.prune` calls following the declared allocation: the same as None.
        follows = allocation is None or (isinstance(allocation, str) and allocation == "auto")
        self.allocation = None if follows else allocation_lib.get(allocation)
        if calibration_data is not None:
            check_calibration_data(calibration_data)
        self.calibration_data = calibration_data
        self.calibration_batch_size = validation.check_int(
            "calibration_batch_size", calibration_batch_size, minimum=1
        )
        self._wrappers = []
        self._unbuilt = []
        self._engine = None
        self._windows = StepWindows(first_step=1)
        self._step = 0
        self._counts = {}
        self._sparsity = 0.0

    def on_train_begin(self, logs=None):
        self._wrappers = wrappers_or_warn(self.model, type(self).__name__)
        if not self._wrappers:
            self._engine = False  # nothing to drive; every hook returns at once
            return
        if getattr(self.model, "optimizer", None) is None:
            raise ValueError(
                "PruningCallback reads the step from the optimizer: compile the model first."
            )
        self._engine = engine_for(self.model)
        self._engine.attach()
        self._windows = StepWindows(
            steps_per_batch_call(self.model), (self.params or {}).get("steps"), first_step=1
        )
        self._windows.start_training(self._iterations())
        self._count_zeros(self._wrappers, fresh=True)

    def _iterations(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        if not self._engine:
            return
        # Read the device counter once per epoch and take steps from the batch index in
        # between: a device read per batch costs more than a small model's whole training step.
        self._windows.start_epoch(self._iterations())

    def on_train_batch_begin(self, batch, logs=None):
        if self._engine is None:  # driven by hand without on_train_begin
            self.on_train_begin()
        if not self._engine:
            return
        steps = self._windows.steps(batch)
        self._step = steps[-1] if len(steps) else self._step + 1
        # Subclassed models build their layers inside the first batch: catch up after it.
        self._unbuilt = [wrapper for wrapper in self._wrappers if not wrapper.built]
        due = {}
        for wrapper in self._wrappers:
            if wrapper.built and not is_follower(wrapper):
                step = latest_due_step(wrapper.schedule, steps)
                if step is not None:
                    due.setdefault(step, []).append(wrapper)
        if not due:
            return
        make_variables_current(self.model, [w for group in due.values() for w in group])
        for step in sorted(due):
            self._collect_gradients_if_due(due[step])
            updated = self._engine.update(step, allocation=self.allocation, wrappers=due[step])
            self._count_zeros(updated)

    def _count_zeros(self, wrappers, fresh=False):
        """Refresh the zero counts of `wrappers` (from the engine's traced update where it
        counted them) and the logged sparsity. Between updates a wrapper's zeros do not move:
        masked weights are held at zero and trained weights do not land on exactly zero."""
        if fresh:
            self._counts = {}
        known = None if fresh else self._engine.zero_counts
        self._counts.update(zero_counts(wrappers, known))
        self._sparsity = sparsity_of(self._counts)

    def _collect_gradients_if_due(self, wrappers):
        """Refresh gradient statistics before an update that ranks by gradients."""
        if self.calibration_data is not None and any(
            wrapper.criterion.needs_gradients for wrapper in wrappers
        ):
            collect_gradients(
                self.model, self.calibration_data, batch_size=self.calibration_batch_size
            )

    def on_train_batch_end(self, batch, logs=None):
        if not self._engine:
            return
        if self._unbuilt:
            make_variables_current(self.model)
            built = [wrapper for wrapper in self._unbuilt if wrapper.built]
            if built:
                self._engine = engine_for(self.model)
                self._engine.attach()
                self._engine.update(self._step, allocation=self.allocation, wrappers=built)
            self._unbuilt = []
            self._count_zeros(self._wrappers, fresh=True)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # `batch` is accepted for tfmot's custom-loop recipe (`on_epoch_end(batch=-1)`).
        # Keras has synced the state by now; on JAX this zeroes what the masks remove, so
        # checkpoints written at the end of the epoch are sparse.
        if not self._engine:
            return
        make_variables_current(self.model, self._wrappers)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def on_train_end(self, logs=None):
        if self._engine:
            make_variables_current(self.model, self._wrappers)

    def get_config(self):
        # calibration_data are arrays, not configuration: pass them again after loading.
        return {
            "allocation": None
            if self.allocation is None
            else keras.saving.serialize_keras_object(self.allocation),
            "calibration_batch_size": self.calibration_batch_size,
        }

    @classmethod
    def from_config(cls, config):
        """The callback `get_config` described (Keras callbacks have no `from_config`)."""
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_prune")
class UpdatePruningStep(PruningCallback):
    """tfmot's name for `PruningCallback`; same behaviour.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.tfmot.UpdatePruningStep()])
    ```
    """
