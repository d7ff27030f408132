"""Lottery tickets: train, prune, rewind the survivors to their early values, retrain."""

import keras
from keras import ops

from keras_prune.callbacks.steps import StepCounter, latest_due_step
from keras_prune.core import allocation as allocation_lib
from keras_prune.core import validation
from keras_prune.core.schedules import IterativeSparsity, decide
from keras_prune.engine.engine import engine_for, wrappers_or_raise


def binary_wrappers(model, caller):
    """The model's wrappers, all with binary masks (methods that set masks themselves)."""
    wrappers = wrappers_or_raise(model, caller, how="kp.prune(model)")
    for wrapper in wrappers:
        if wrapper.mask_type.learnable:
            raise ValueError(
                f"{caller} sets binary masks itself; layer {wrapper.name!r} has a learnable mask. "
                "Prune with mask='binary'."
            )
    return wrappers


def _reset_optimizer_slots(optimizer):
    """Zero the optimizer's per-weight state (momenta), leaving its step and learning rate."""
    for variable in optimizer.variables:
        if len(variable.shape) > 0:
            variable.assign(ops.zeros(variable.shape, variable.dtype))


@keras.saving.register_keras_serializable(package="keras_prune")
class LotteryTicket(StepCounter):
    """Lottery-ticket training by iterative magnitude pruning with rewinding (Frankle & Carbin
    2019; rewinding to an early step: Frankle et al. 2020).

    At `rewind_step` every trainable weight is saved. After each round of `frequency`
    steps, the weights are pruned to the next of `sparsities` (by the wrappers' criterion and
    `allocation`), the surviving weights are reset to exactly their saved values, all other
    trainable weights too, and the optimizer's momenta are cleared; then the next round trains.
    Use it instead of `kp.PruningCallback` and train at least
    `(len(sparsities) + 1) * frequency` steps. The saved weights live in this callback,
    not in the model.

    Args:
        sparsities: sparsity after each round, non-decreasing, each in [0, 1).
        frequency: training steps per round (between two cuts).
        rewind_step: step whose weights survivors are rewound to (0 = initialisation), smaller
            than `frequency`.
        allocation: how sparsity is spread across layers (default per layer; lottery-ticket
            papers often use `kp.allocation.GlobalAllocation()`).
        reset_optimizer: clear optimizer momenta at each rewind.

    Example:

    ```python
    # docs: slow
    pruned = kp.prune(model)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    ticket = kp.methods.LotteryTicket([0.5, 0.75, 0.9], frequency=300, rewind_step=20)
    pruned.fit(x, y, epochs=20, callbacks=[ticket])
    ```
    """

    def __init__(
        self,
        sparsities,
        frequency,
        rewind_step=0,
        allocation=None,
        reset_optimizer=True,
    ):
        super().__init__()
        self.schedule = IterativeSparsity(sparsities, frequency, begin_step=frequency)
        validation.check_int("rewind_step", rewind_step, minimum=0)
        if rewind_step >= frequency:
            raise ValueError(
                "Expected `rewind_step` < `frequency` (the weights are saved during the "
                f"first round). Received: rewind_step={rewind_step}, "
                f"frequency={frequency}"
            )
        self.sparsities = self.schedule.sparsities
        self.frequency = frequency
        self.rewind_step = rewind_step
        self.allocation = allocation_lib.get(allocation or "per_layer")
        self.reset_optimizer = validation.check_bool("reset_optimizer", reset_optimizer)
        self.saved = None
        self.rounds_done = 0

    def on_train_begin(self, logs=None):
        self._wrappers = binary_wrappers(self.model, "LotteryTicket")
        engine_for(self.model).attach()

    def on_train_batch_begin(self, batch, logs=None):
        steps = self._steps(batch)
        if self.rewind_step in steps and self.saved is None:
            self._make_current()
            self.saved = [
                (variable, ops.convert_to_numpy(variable))
                for variable in self.model.trainable_variables
            ]
        due = latest_due_step(self.schedule, [step for step in steps if step > self.rewind_step])
        if due is not None:
            self._make_current()
            self.prune_and_rewind(decide(self.schedule, due)[1])

    def prune_and_rewind(self, sparsity):
        """Prune to `sparsity` from the current weights, then rewind everything to the saved
        weights (masked)."""
        if self.saved is None:
            raise RuntimeError(
                f"LotteryTicket has no saved weights: training never reached rewind_step="
                f"{self.rewind_step}. Start from step 0 (a fresh optimizer) or lower rewind_step."
            )
        engine_for(self.model).prune_to(sparsity, allocation=self.allocation)
        mask_of = {
            id(target.variable): wrapper.masks[index]
            for wrapper in self._wrappers
            for index, target in enumerate(wrapper.targets)
        }
        for variable, value in self.saved:
            mask = mask_of.get(id(variable))
            variable.assign(value if mask is None else value * ops.convert_to_numpy(mask))
        if self.reset_optimizer:
            _reset_optimizer_slots(self.model.optimizer)
        self.rounds_done += 1

    def get_config(self):
        return {
            "sparsities": self.sparsities,
            "frequency": self.frequency,
            "rewind_step": self.rewind_step,
            "allocation": keras.saving.serialize_keras_object(self.allocation),
            "reset_optimizer": self.reset_optimizer,
        }
