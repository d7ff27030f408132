"""Sparse training from scratch by drop-and-grow: SET (random growth) and RigL (gradient
growth), at a fixed sparsity distributed by ERK."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_prune.callbacks.steps import StepCounter
from keras_prune.core import allocation as allocation_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import masks, validation
from keras_prune.engine.engine import engine_for
from keras_prune.engine.gradients import check_calibration_data, collect_gradients
from keras_prune.methods.lottery_ticket import binary_wrappers


def drop_and_grow(mask, drop_scores, grow_scores, count):
    """Move `count` connections: drop the `count` active entries of lowest `drop_scores`, grow
    the `count` inactive entries (inactive before the drop) of highest `grow_scores`.

    The number of active entries is unchanged. Pure function on tensors of one shape.

    Example:

    ```python
    kp.methods.drop_and_grow(np.array([1.0, 1.0, 0.0, 0.0]), np.array([3.0, 1.0, 0.0, 0.0]),
                             np.array([0.0, 0.0, 0.2, 0.9]), 1)  # [1, 0, 0, 1]
    ```
    """
    mask = ops.cast(mask, "float32")
    active = ops.greater(mask, 0)
    validation.check_int("count", count, minimum=0)
    size = math.prod(ops.shape(mask))
    active_count = int(ops.convert_to_numpy(ops.sum(mask)))
    count = min(int(count), active_count - 1, size - active_count)
    if count <= 0:
        return mask
    drop_scores = ops.cast(drop_scores, "float32")
    grow_scores = ops.cast(grow_scores, "float32")
    kept = masks.top_k_mask(ops.where(active, drop_scores, -float("inf")), active_count - count)
    grown = masks.top_k_mask(ops.where(active, -float("inf"), grow_scores), count)
    return kept + grown


class _DropAndGrow(StepCounter):
    """Shared machinery of SET and RigL: random sparse start, periodic drop-and-grow."""

    def __init__(
        self,
        sparsity,
        frequency=100,
        drop_fraction=0.3,
        end_step=None,
        distribution="erk",
        seed=0,
    ):
        super().__init__()
        validation.check_sparsity("sparsity", sparsity)
        validation.check_int("frequency", frequency, minimum=1)
        if end_step is not None:
            validation.check_int("end_step", end_step, minimum=1)
        if not isinstance(drop_fraction, numbers.Real) or not 0 < drop_fraction < 1:
            raise ValueError(
                f"Expected `drop_fraction` in (0, 1). Received: drop_fraction={drop_fraction!r}"
            )
        validation.check_choice("distribution", distribution, {"erk", "uniform"})
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Expected `seed` to be an integer. Received: seed={seed!r}")
        self.sparsity = float(sparsity)
        self.frequency = frequency
        self.drop_fraction = float(drop_fraction)
        self.end_step = end_step
        self.distribution = distribution
        self.seed = seed

    def layer_sparsities(self, wrappers):
        """Sparsity of each target of each wrapper (flattened, in order)."""
        shapes = [tuple(t.variable.shape) for wrapper in wrappers for t in wrapper.targets]
        power = 1.0 if self.distribution == "erk" else 0.0
        return allocation_lib.erk_sparsities(shapes, self.sparsity, power_scale=power)

    def on_train_begin(self, logs=None):
        caller = type(self).__name__
        self._wrappers = binary_wrappers(self.model, caller)
        for wrapper in self._wrappers:
            if not isinstance(wrapper.granularity, granularity_lib.Unstructured):
                raise ValueError(
                    f"{caller} moves single connections; layer {wrapper.name!r} uses "
                    f"{wrapper.granularity!r}. Prune with granularity='unstructured'."
                )
        self._engine = engine_for(self.model)
        self._engine.attach()
        # A model that already went through a start (saved mid-training) keeps its masks.
        if int(ops.convert_to_numpy(self._wrappers[0].pruning_step)) < 0:
            self._random_start()

    def _random_start(self):
        rng = np.random.default_rng(self.seed)
        sparsities = iter(self.layer_sparsities(self._wrappers))
        for wrapper in self._wrappers:
            wrapper_masks = []
            for target in wrapper.targets:
                scores = rng.random(tuple(target.variable.shape), dtype=np.float32)
                wrapper_masks.append((masks.sparsity_mask(scores, next(sparsities)), None))
            self._engine.install(wrapper, wrapper_masks, self.sparsity, step=0)

    def drop_fraction_at(self, step):
        """Cosine-decayed fraction of active connections moved at `step` (RigL's schedule)."""
        if self.end_step is None:
            return self.drop_fraction
        if step >= self.end_step:
            return 0.0
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def on_train_batch_begin(self, batch, logs=None):
        step = next(
            (s for s in reversed(self._steps(batch)) if s > 0 and s % self.frequency == 0),
            None,
        )
        if step is None:
            return
        fraction = self.drop_fraction_at(step)
        if fraction <= 0:
            return
        self._make_current()
        self.prepare_growth()
        for wrapper in self._wrappers:
            wrapper_masks = []
            for index, target in enumerate(wrapper.targets):
                mask = wrapper.masks[index]
                count = round(fraction * float(ops.convert_to_numpy(ops.sum(mask))))
                new_mask = drop_and_grow(
                    mask,
                    ops.abs(target.variable),
                    self.grow_scores(wrapper, index, step),
                    count,
                )
                wrapper_masks.append((new_mask, None))
            self._engine.install(wrapper, wrapper_masks, self.sparsity, step=step)

    def prepare_growth(self):
        """Hook run once before each drop-and-grow (RigL collects gradients here)."""

    def grow_scores(self, wrapper, index, step):
        raise NotImplementedError

    def get_config(self):
        return {
            "sparsity": self.sparsity,
            "frequency": self.frequency,
            "drop_fraction": self.drop_fraction,
            "end_step": self.end_step,
            "distribution": self.distribution,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class SET(_DropAndGrow):
    """Sparse Evolutionary Training (Mocanu et al. 2018): train a sparse network from scratch,
    every `frequency` steps drop the smallest-magnitude fraction of each layer's connections
    and regrow as many at random positions (starting at zero).

    Training starts from random masks at `sparsity` distributed by ERK (or uniformly), applied to
    the freshly initialised weights. Use it instead of `kp.PruningCallback`.

    Args:
        sparsity: overall sparsity, held fixed, in [0, 1).
        frequency: steps between drop-and-grow updates.
        drop_fraction: fraction of active connections moved per update, in (0, 1).
        end_step: stop updating here; with it the fraction decays by a cosine (RigL's
            schedule). None keeps the fraction constant and never stops.
        distribution: "erk" or "uniform" per-layer sparsities.
        seed: seed of the random start and the random growth.

    Example:

    ```python
    # docs: slow
    sparse = kp.prune(model)
    sparse.compile("adam", "sparse_categorical_crossentropy")
    sparse.fit(x, y, epochs=20, callbacks=[kp.methods.SET(0.9, frequency=50, end_step=2000)])
    ```
    """

    def grow_scores(self, wrapper, index, step):
        shape = tuple(wrapper.targets[index].variable.shape)
        rng = np.random.default_rng([self.seed, step, index, len(wrapper.name)])
        return rng.random(shape, dtype=np.float32)


@keras.saving.register_keras_serializable(package="keras_prune")
class RigL(_DropAndGrow):
    """Rigged Lottery (Evci et al. 2020): like `SET`, but regrows the inactive connections with
    the largest gradient magnitude.

    The dense gradients are computed on `calibration_data` (a held batch; Keras callbacks do not
    see the training batch) by `kp.engine.collect_gradients` (TensorFlow, torch or JAX). Use it
    instead of `kp.PruningCallback`.

    Args:
        sparsity: overall sparsity, held fixed, in [0, 1).
        calibration_data: `(x, y)` on which gradients are computed at each update.
        calibration_batch_size: batch size for the gradient computation.
        **kwargs: the arguments of `SET`: `frequency` (steps between drop-and-grow updates),
            `drop_fraction` (fraction of active connections moved per update, in (0, 1)),
            `end_step` (stop updating here, with cosine decay of the fraction; None: never
            stop), `distribution` ("erk" or "uniform") and `seed` (of the random start).

    Example:

    ```python
    # docs: slow
    sparse = kp.prune(model)
    sparse.compile("adam", "sparse_categorical_crossentropy")
    rigl = kp.methods.RigL(0.9, calibration_data=(x[:256], y[:256]), frequency=50, end_step=2000)
    sparse.fit(x, y, epochs=20, callbacks=[rigl])
    ```
    """

    def __init__(self, sparsity, calibration_data=None, calibration_batch_size=128, **kwargs):
        known = ("frequency", "drop_fraction", "end_step", "distribution", "seed")
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise TypeError(
                f"RigL got unexpected arguments {unknown}; it accepts sparsity, calibration_data, "
                f"calibration_batch_size and {', '.join(known)}."
                + validation.did_you_mean(unknown[0], known)
            )
        super().__init__(sparsity, **kwargs)
        if calibration_data is not None:
            check_calibration_data(calibration_data, labels=True)
        self.calibration_data = calibration_data
        self.calibration_batch_size = validation.check_int(
            "calibration_batch_size", calibration_batch_size, minimum=1
        )

    def on_train_begin(self, logs=None):
        if self.calibration_data is None:
            raise ValueError(
                "RigL grows connections by gradient magnitude: pass "
                "`calibration_data=(x, y)` (a few hundred training examples)."
            )
        super().on_train_begin(logs)

    def prepare_growth(self):
        collect_gradients(self.model, self.calibration_data, batch_size=self.calibration_batch_size)

    def grow_scores(self, wrapper, index, step):
        return ops.abs(wrapper.gradient_statistics[index].mean_gradient)

    def get_config(self):
        # calibration_data are arrays, not configuration: pass them again after loading.
        return {**super().get_config(), "calibration_batch_size": self.calibration_batch_size}
