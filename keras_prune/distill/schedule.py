"""`DistillSchedule`: a distillation setting that moves with the pruning schedule.

It ramps a scalar (the distillation weight `alpha`, the temperature, the hint weight) from an
initial to a final value as training advances, with the same polynomial ramp as the pruning
schedule, so distillation can grow as sparsity rises.
"""

import keras
from keras import ops

from keras_prune.core import validation


@keras.saving.register_keras_serializable(package="keras_prune")
class DistillSchedule:
    """A scalar that ramps from `initial` to `final` between `begin_step` and `end_step`.

    `value(step) = final + (initial - final) * (1 - p) ** power`, with
    `p = clip((s - begin_step) / (end_step - begin_step), 0, 1)` and
    `s = begin_step + floor((step - begin_step) / frequency) * frequency` for steps past
    `begin_step`: the formula of tfmot's `PolynomialDecay`, so with the pruning schedule's
    `begin_step`, `end_step`, `power` and `frequency` (see `following`) the value moves
    exactly in step with the sparsity: at any step it has covered the same fraction of its
    way from `initial` to `final` as the sparsity has. Use it for the Distiller's `alpha`
    (more distillation as sparsity rises), `temperature` or `hint_weight`.

    Args:
        initial: value up to `begin_step`.
        final: value from `end_step` on.
        begin_step: step where the ramp starts, >= 0.
        end_step: step where the ramp ends, >= `begin_step`. Equal to `begin_step` gives a
            jump to `final` at that step.
        power: exponent of the ramp, > 0; 1 is linear, 3 is tfmot's default.
        frequency: the value changes only every `frequency` steps (like mask updates), >= 1.

    Example:

    ```python
    import keras_prune as kp

    alpha = kp.distill.DistillSchedule(0.2, 0.9, begin_step=0, end_step=1000, power=1)
    print(float(alpha(500)))  # 0.55
    ```
    """

    def __init__(self, initial, final, begin_step=0, end_step=1000, power=3.0, frequency=1):
        self.initial = validation.check_real("initial", initial)
        self.final = validation.check_real("final", final)
        begin_step = validation.check_int("begin_step", begin_step, minimum=0)
        end_step = validation.check_int("end_step", end_step, minimum=0)
        if end_step < begin_step:
            raise ValueError(
                f"Expected `end_step` >= `begin_step` ({begin_step}). Received: end_step={end_step}"
            )
        frequency = validation.check_int("frequency", frequency, minimum=1)
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = validation.check_real("power", power, low=0, low_open=True)
        self.frequency = frequency

    @classmethod
    def following(cls, pruning_schedule, initial, final):
        """A schedule that ramps in step with `pruning_schedule`'s sparsity.

        Reads `begin_step`, `end_step`, `power` (default 3) and `frequency` (default 1) from
        the pruning schedule (`keras_prune.PolynomialDecay`; a `ConstantSparsity`, which has
        no end, gives a jump to `final` at its `begin_step`).

        Args:
            pruning_schedule: a pruning schedule object.
            initial: value while the sparsity is at its initial value.
            final: value once the final sparsity is reached.

        Returns:
            A `DistillSchedule`.
        """
        try:
            begin_step = int(pruning_schedule.begin_step)
            end_step = int(pruning_schedule.end_step)
        except AttributeError as error:
            raise ValueError(
                "Expected a pruning schedule with `begin_step` and `end_step` attributes "
                f"(e.g. keras_prune.PolynomialDecay). Received: {pruning_schedule!r}. Build "
                "the schedule directly: DistillSchedule(initial, final, begin_step, end_step)."
            ) from error
        power = getattr(pruning_schedule, "power", 3.0)
        frequency = int(getattr(pruning_schedule, "frequency", 1))
        if end_step < begin_step:  # "no end" (ConstantSparsity): full sparsity at once.
            end_step = begin_step
        return cls(initial, final, begin_step, end_step, power=power, frequency=frequency)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        begin = float(self.begin_step)
        since_begin = ops.maximum(step - begin, 0.0)
        quantized = begin + ops.floor(since_begin / self.frequency) * self.frequency
        if self.end_step == self.begin_step:
            progress = ops.cast(step >= begin, "float32")
        else:
            progress = ops.clip((quantized - begin) / (self.end_step - begin), 0.0, 1.0)
        return self.final + (self.initial - self.final) * ops.power(1.0 - progress, self.power)

    def get_config(self):
        return {
            "initial": self.initial,
            "final": self.final,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"DistillSchedule({arguments})"
