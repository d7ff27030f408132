"""Sparsity schedules: pure `step -> (should_prune, sparsity)` objects.

The formulas and update rule match tensorflow-model-optimization's, so a tfmot user gets the same
masks at the same steps after switching to keras_prune.
"""

import numbers

import keras
from keras import ops

from keras_prune.core import registry, validation
from keras_prune.core.config_object import ConfigObject

__all__ = [
    "ConstantSparsity",
    "FunctionSchedule",
    "IterativeSparsity",
    "OneShotSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "deserialize",
    "get",
    "serialize",
]


class PruningSchedule(ConfigObject):
    """Base class for sparsity schedules.

    A schedule answers, for an optimizer step, whether masks are recomputed at that step and which
    sparsity they should have. Subclasses implement `sparsity_at(step)` and may override
    `should_update(step)`; both receive a Python int or a scalar tensor.

    Args:
        begin_step: first step at which masks are updated.
        end_step: last step at which masks are updated; `-1` means never stop.
        frequency: masks are updated every `frequency` steps from `begin_step`.

    Example:

    ```python
    class Linear(kp.PruningSchedule):
        def __init__(self, target, **kwargs):
            super().__init__(**kwargs)
            self.target = target

        def sparsity_at(self, step):
            progress = (step - self.begin_step) / max(self.end_step - self.begin_step, 1)
            return self.target * min(max(progress, 0.0), 1.0)

        def get_config(self):
            return {**super().get_config(), "target": self.target}

    should_prune, sparsity = Linear(0.5, begin_step=0, end_step=100, frequency=10)(50)
    ```
    """

    def __init__(self, begin_step=0, end_step=-1, frequency=100):
        begin_step = validation.check_int("begin_step", begin_step, minimum=0)
        end_step = validation.check_int("end_step", end_step, minimum=-1)
        frequency = validation.check_int("frequency", frequency, minimum=1)
        if end_step != -1 and end_step < begin_step:
            raise ValueError(
                "Expected `end_step` >= `begin_step` (or end_step=-1 for no end). "
                f"Received: begin_step={begin_step}, end_step={end_step}"
            )
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def should_update(self, step):
        """Whether masks are recomputed at `step` (tfmot's rule)."""
        if isinstance(step, numbers.Integral):
            step = int(step)
            in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
            return in_range and (step - self.begin_step) % self.frequency == 0
        step = ops.cast(step, "int64")
        in_range = ops.greater_equal(step, self.begin_step)
        if self.end_step >= 0:
            in_range = ops.logical_and(in_range, ops.less_equal(step, self.end_step))
        on_frequency = ops.equal(ops.mod(step - self.begin_step, self.frequency), 0)
        return ops.logical_and(in_range, on_frequency)

    def sparsity_at(self, step):
        """Target sparsity in [0, 1) at `step`."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `sparsity_at(step)` to be used as a schedule."
        )

    def end_sparsity(self):
        """Sparsity the schedule reaches at its end (used by summaries and reports)."""
        end = self.end_step if self.end_step >= 0 else self.begin_step
        return float(self.sparsity_at(end))

    def __call__(self, step):
        return self.should_update(step), self.sparsity_at(step)

    def get_config(self):
        return {
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class ConstantSparsity(PruningSchedule):
    """Prune to a fixed sparsity every `frequency` steps from `begin_step`.

    `sparsity_at(step) = sparsity`; masks update when
    `begin_step <= step <= end_step` (or `end_step == -1`) and
    `(step - begin_step) % frequency == 0`. (tfmot calls the first argument
    `target_sparsity`; `kp.tfmot.ConstantSparsity` keeps that name.)

    Args:
        sparsity: fraction of weights set to zero, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last update step, `-1` for no end.
        frequency: steps between mask updates.

    Example:

    ```python
    schedule = kp.ConstantSparsity(0.8, begin_step=100, frequency=50)
    schedule(150)  # (True, 0.8)
    ```
    """

    def __init__(self, sparsity, begin_step=0, end_step=-1, frequency=100):
        self.sparsity = validation.check_sparsity("sparsity", sparsity)
        super().__init__(begin_step=begin_step, end_step=end_step, frequency=frequency)

    def sparsity_at(self, step):
        if isinstance(step, numbers.Integral):
            return self.sparsity
        return ops.convert_to_tensor(self.sparsity, "float32")

    def get_config(self):
        return {"sparsity": self.sparsity, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_prune")
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` along a polynomial.

    With `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`:
    `sparsity = final_sparsity + (initial_sparsity - final_sparsity) * (1 - p) ** power`.
    Masks update when `begin_step <= step <= end_step` and `(step - begin_step) % frequency == 0`
    (tfmot's formula and rule).

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first update step.
        end_step: last update step; must be >= `begin_step`.
        power: exponent of the decay (3 = prune fast early, slowly late).
        frequency: steps between mask updates.

    Example:

    ```python
    schedule = kp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=100)
    schedule(500)  # (True, 0.7875)
    ```
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        initial_sparsity = validation.check_sparsity("initial_sparsity", initial_sparsity)
        final_sparsity = validation.check_sparsity("final_sparsity", final_sparsity)
        end_step = validation.check_int("end_step", end_step)
        if end_step < 0:
            raise ValueError(
                "PolynomialDecay needs an end: expected `end_step` >= `begin_step`. "
                f"Received: end_step={end_step}. Use ConstantSparsity for an open-ended schedule."
            )
        power = validation.check_real("power", power, low=0, low_open=True)
        super().__init__(begin_step=begin_step, end_step=end_step, frequency=frequency)
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = int(power) if power.is_integer() else power

    def sparsity_at(self, step):
        span = max(self.end_step - self.begin_step, 1)
        initial, final = self.initial_sparsity, self.final_sparsity
        if isinstance(step, numbers.Integral):
            progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
            return final + (initial - final) * (1.0 - progress) ** self.power
        step = ops.cast(step, "float32")
        progress = ops.clip((step - self.begin_step) / span, 0.0, 1.0)
        return final + (initial - final) * ops.power(1.0 - progress, self.power)

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class OneShotSparsity(PruningSchedule):
    """The schedule `prune_once` gives its wrappers: masks are set once and never recomputed.

    `kp.PruningCallback` may be used while fine-tuning (it changes nothing); after reloading a
    saved model it is what lets `fit` run.

    Args:
        sparsity: the sparsity the masks were set to, in [0, 1).

    Example:

    ```python
    kp.schedules.OneShotSparsity(0.9)(100)  # (False, 0.9)
    ```
    """

    def __init__(self, sparsity):
        self.sparsity = validation.check_sparsity("sparsity", sparsity)
        super().__init__(begin_step=0, end_step=0, frequency=1)

    def should_update(self, step):
        if isinstance(step, numbers.Integral):
            return False
        return ops.convert_to_tensor(False)

    def sparsity_at(self, step):
        return self.sparsity

    def get_config(self):
        return {"sparsity": self.sparsity}


@keras.saving.register_keras_serializable(package="keras_prune")
class IterativeSparsity(PruningSchedule):
    """Prune-retrain cycles: at `begin_step + i * frequency` prune to `sparsities[i]`, then
    train `frequency` steps with that mask before the next cut.

    Args:
        sparsities: rising sparsities, one per round, each in [0, 1).
        frequency: training steps between cuts (the length of a round).
        begin_step: step of the first cut (default 1: the first training batch, since
            `kp.PruningCallback` counts batches from 1 as tfmot does).

    Example:

    ```python
    schedule = kp.schedules.IterativeSparsity([0.5, 0.75, 0.9], frequency=200)
    pruned = kp.prune(model, schedule=schedule)
    pruned.fit(x, y, epochs=10, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(self, sparsities, frequency, begin_step=1):
        if not isinstance(sparsities, (list, tuple)) or not sparsities:
            raise ValueError(
                "Expected `sparsities` to be a non-empty list, one sparsity per round, e.g. "
                f"[0.5, 0.75, 0.9]. Received: sparsities={sparsities!r}"
            )
        sparsities = [
            validation.check_sparsity(f"sparsities[{index}]", sparsity)
            for index, sparsity in enumerate(sparsities)
        ]
        if any(b < a for a, b in zip(sparsities, sparsities[1:], strict=False)):
            raise ValueError(
                f"Expected non-decreasing `sparsities` (pruned weights stay pruned). "
                f"Received: sparsities={sparsities}"
            )
        frequency = validation.check_int("frequency", frequency, minimum=1)
        begin_step = validation.check_int("begin_step", begin_step, minimum=0)
        super().__init__(
            begin_step=begin_step,
            end_step=begin_step + (len(sparsities) - 1) * frequency,
            frequency=frequency,
        )
        self.sparsities = sparsities

    def sparsity_at(self, step):
        if isinstance(step, numbers.Integral):
            index = min(
                max((int(step) - self.begin_step) // self.frequency, 0),
                len(self.sparsities) - 1,
            )
            return self.sparsities[index]
        index = ops.clip(
            ops.floor_divide(ops.cast(step, "int64") - self.begin_step, self.frequency),
            0,
            len(self.sparsities) - 1,
        )
        return ops.take(ops.convert_to_tensor(self.sparsities, "float32"), index)

    def get_config(self):
        return {
            "sparsities": self.sparsities,
            "frequency": self.frequency,
            "begin_step": self.begin_step,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class FunctionSchedule(PruningSchedule):
    """A schedule from a function `step -> (should_prune, sparsity)`: tfmot's schedule contract.

    Args:
        function: called with the step; returns whether masks update at that step and the
            sparsity they should have. Register it with
            `@keras.saving.register_keras_serializable()` so the schedule saves with the model.

    Example:

    ```python
    schedule = kp.schedules.FunctionSchedule(lambda step: (step % 10 == 0, min(step / 100, 0.9)))
    ```
    """

    def __init__(self, function):
        if not callable(function):
            raise TypeError(
                "Expected `function` to be a callable `step -> (should_prune, sparsity)`. "
                f"Received: function={function!r}"
            )
        super().__init__()
        self.function = function

    def __call__(self, step):
        return self.function(step)

    def should_update(self, step):
        return self.function(step)[0]

    def sparsity_at(self, step):
        return self.function(step)[1]

    def get_config(self):
        return {"function": keras.saving.serialize_keras_object(self.function)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["function"]))


def decide(schedule, step):
    """`(update now?, sparsity)` of `schedule` at a Python int `step`, through its `__call__`,
    so that a schedule written to tfmot's contract (only `__call__` overridden) is followed."""
    should_update, sparsity = schedule(step)
    return bool(_plain(should_update)), float(_plain(sparsity))


def _plain(value):
    # Built-in schedules answer in Python numbers for Python steps: skip the tensor round trip.
    return value if isinstance(value, numbers.Number) else ops.convert_to_numpy(value)


ALIASES = {
    "constant": ConstantSparsity,
    "polynomial": PolynomialDecay,
}

REGISTRY = registry.Registry(
    "schedule",
    PruningSchedule,
    ALIASES,
    from_function=FunctionSchedule,
    examples="kp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)",
)


def get(identifier):
    """A schedule from an instance, a name ("constant", "polynomial": their defaults), a
    serialized dict, or a function `step -> (should_prune, sparsity)`.

    Example:

    ```python
    kp.schedules.get(kp.schedules.serialize(kp.ConstantSparsity(0.5)))
    ```
    """
    return REGISTRY.get(identifier)


def serialize(schedule):
    """A JSON-able config of `schedule` (class and constructor arguments)."""
    return REGISTRY.serialize(schedule)


def deserialize(config, custom_objects=None):
    """The schedule `serialize` described (user schedules must be registered)."""
    return REGISTRY.deserialize(config, custom_objects)
