"""tfmot's schedule spellings: `ConstantSparsity(target_sparsity, ...)`.

keras_prune calls the amount pruned `sparsity` everywhere; tfmot's `ConstantSparsity` called it
`target_sparsity`. This subclass keeps tfmot's argument name so migrated code runs unchanged.
"""

import keras

from keras_prune.core import schedules, validation


@keras.saving.register_keras_serializable(package="keras_prune.tfmot")
class ConstantSparsity(schedules.ConstantSparsity):
    """`kp.ConstantSparsity` with tfmot's argument name `target_sparsity`.

    Args:
        target_sparsity: fraction of weights set to zero, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last update step, `-1` for no end.
        frequency: steps between mask updates.

    Example:

    ```python
    schedule = kp.tfmot.ConstantSparsity(target_sparsity=0.5, begin_step=0)
    ```
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        target_sparsity = validation.check_sparsity("target_sparsity", target_sparsity)
        super().__init__(target_sparsity, begin_step, end_step, frequency)

    @property
    def target_sparsity(self):
        return self.sparsity

    def get_config(self):
        config = super().get_config()
        return {"target_sparsity": config.pop("sparsity"), **config}
