"""Pruning methods built on the wrapper: one-shot, iterative, lottery ticket, SET and RigL.

- `prune_once`: prune a trained model at once (any criterion / allocation), then fine-tune.
- `IterativeSparsity`: a schedule for prune-retrain cycles at rising sparsities.
- `LotteryTicket`: train, prune, rewind the survivors to their early values, retrain; rounds.
- `SET` / `RigL`: sparse training from scratch at a fixed sparsity (ERK by default), moving
  connections by drop-and-grow.
- `penalize_masks`: put a sparsity penalty on learnable mask scores / gates.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_prune.callbacks.pruning_callback import (
    StepWindows,
    latest_due_step,
    steps_per_batch_call,
    wrappers_or_raise,
)
from keras_prune.core import allocation as allocation_lib
from keras_prune.core import criteria as criteria_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import masks, schedules, validation
from keras_prune.engine.fit_state import make_variables_current
from keras_prune.graph.groups import couple_channel_masks, update_channel_masks
from keras_prune.pruning.prune_strip import find_wrappers, prune


@keras.saving.register_keras_serializable(package="keras_prune")
class OneShotSparsity(schedules.PruningSchedule):
    """The schedule `prune_once` gives its wrappers: masks are set once and never recomputed.

    `kp.PruningCallback` may be used while fine-tuning (it changes nothing); after reloading a
    saved model it is what lets `fit` run.

    Args:
        sparsity: the sparsity the masks were set to, in [0, 1).

    Example:

    ```python
    kp.OneShotSparsity(0.9)(100)  # (False, 0.9)
    ```
    """

    def __init__(self, sparsity):
        validation.check_sparsity("sparsity", sparsity)
        super().__init__(begin_step=0, end_step=0, frequency=1)
        self.target_sparsity = float(sparsity)

    def should_update(self, step):
        if isinstance(step, numbers.Integral):
            return False
        return ops.convert_to_tensor(False)

    def sparsity_at(self, step):
        return self.target_sparsity

    def get_config(self):
        return {"sparsity": self.target_sparsity}


@keras.saving.register_keras_serializable(package="keras_prune")
class IterativeSparsity(schedules.PruningSchedule):
    """Prune-retrain cycles: at `begin_step + i * steps_per_round` prune to `sparsities[i]`,
    then train `steps_per_round` steps with that mask before the next cut.

    Args:
        sparsities: rising sparsities, one per round, each in [0, 1).
        steps_per_round: training steps between cuts.
        begin_step: step of the first cut.

    Example:

    ```python
    schedule = kp.IterativeSparsity([0.5, 0.75, 0.9], steps_per_round=200)
    pruned = kp.prune(model, schedule=schedule)
    pruned.fit(x, y, epochs=10, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(self, sparsities, steps_per_round, begin_step=0):
        sparsities = [float(s) if isinstance(s, numbers.Real) else s for s in sparsities]
        if not sparsities:
            raise ValueError("Expected at least one sparsity in `sparsities`. Received: []")
        for index, sparsity in enumerate(sparsities):
            validation.check_sparsity(f"sparsities[{index}]", sparsity)
        if any(b < a for a, b in zip(sparsities, sparsities[1:], strict=False)):
            raise ValueError(
                f"Expected non-decreasing `sparsities` (pruned weights stay pruned). "
                f"Received: sparsities={sparsities}"
            )
        validation.check_int("steps_per_round", steps_per_round, minimum=1)
        super().__init__(
            begin_step=begin_step,
            end_step=begin_step + (len(sparsities) - 1) * steps_per_round,
            frequency=steps_per_round,
        )
        self.sparsities = sparsities
        self.steps_per_round = steps_per_round

    def sparsity_at(self, step):
        if isinstance(step, numbers.Integral):
            index = min(
                max((int(step) - self.begin_step) // self.steps_per_round, 0),
                len(self.sparsities) - 1,
            )
            return self.sparsities[index]
        index = ops.clip(
            ops.floor_divide(ops.cast(step, "int64") - self.begin_step, self.steps_per_round),
            0,
            len(self.sparsities) - 1,
        )
        return ops.take(ops.convert_to_tensor(self.sparsities, "float32"), index)

    def get_config(self):
        return {
            "sparsities": self.sparsities,
            "steps_per_round": self.steps_per_round,
            "begin_step": self.begin_step,
        }


def prune_once(
    model,
    sparsity,
    granularity="unstructured",
    criterion="magnitude",
    allocation=None,
    filters=None,
    calibration_data=None,
):
    """Prune a (trained) model in one shot; returns the pruned copy, ready to fine-tune.

    Masks are computed now, with the criterion and allocation given, and never recomputed (the
    wrappers get a `OneShotSparsity` schedule), so fine-tune with a plain `fit`.

    Args:
        model: a built Sequential or Functional model; left untouched.
        sparsity: target sparsity in [0, 1) (for `ThresholdAllocation` it is only recorded).
        granularity: see `kp.prune`.
        criterion: see `kp.criteria`; gradient criteria need `calibration_data` and a compiled
            `model` (its loss is used).
        allocation: a `kp.allocation.Allocation` or name. Default: every tensor at
            `sparsity`, and at channel granularity the channels of each dependency group ranked
            together (BatchNormalization held at zero), so `kp.shrink` removes them. An explicit
            allocation ranks channels layer by layer; then each group keeps a channel if any
            of its layers kept it (`kp.groups.couple_channel_masks`).
        filters: which layers to prune (see `kp.prune`).
        calibration_data: `(x, y)` for gradient criteria.

    Example:

    ```python
    pruned = kp.prune_once(trained, 0.9, allocation=kp.GlobalAllocation())
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, epochs=2)
    ```
    """
    validation.check_sparsity("sparsity", sparsity)
    chosen = criteria_lib.get(criterion)
    allocation = None if allocation is None else allocation_lib.get(allocation)
    pruned = prune(
        model,
        schedule=OneShotSparsity(sparsity),
        granularity=granularity,
        criterion=chosen,
        filters=filters,
    )
    wrappers = find_wrappers(pruned)
    if chosen.needs_gradients:
        if calibration_data is None or not getattr(model, "compiled", False):
            raise ValueError(
                f"Criterion {chosen!r} ranks by gradients: pass `calibration_data=(x, y)` and "
                "compile `model` first (its loss is used to compute the gradients)."
            )
        pruned.compile(optimizer="sgd", loss=model.loss)
        criteria_lib.collect_gradients(pruned, *calibration_data)
    if allocation is None:
        # Each tensor at `sparsity`; channel masks ranked per dependency group, as
        # kp.PruningCallback does, so that kp.shrink can remove what they mask.
        update_channel_masks(pruned, 0, wrappers, sparsity=sparsity)
    else:
        allocation.apply(wrappers, sparsity)
        couple_channel_masks(pruned, wrappers)
    for wrapper in wrappers:
        wrapper.mask_updates_attached = True
        wrapper.pruning_step.assign(0)
    return pruned


def _binary_unstructured_wrappers(model, caller):
    wrappers = wrappers_or_raise(model, caller, how="kp.prune(model)")
    for wrapper in wrappers:
        if wrapper.mask_type.learnable:
            raise ValueError(
                f"{caller} sets binary masks itself; layer {wrapper.name!r} has a learnable mask. "
                "Prune with mask='binary'."
            )
    return wrappers


class _StepCounter(keras.callbacks.Callback):
    """Knows the optimizer steps of each batch call, reading the device counter once per epoch
    (a read per batch costs more than a small model's whole training step), as
    `kp.PruningCallback` does; see `callbacks.StepWindows` for `steps_per_execution`.

    Subclasses set `self._wrappers` in `on_train_begin`, get their steps from
    `self._steps(batch)` and call `self._make_current()` before they read or change weights
    mid-epoch (see `keras_prune.engine.fit_state`).
    """

    _wrappers = ()
    _windows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._windows is None:
            self._windows = StepWindows(
                steps_per_batch_call(self.model), (self.params or {}).get("steps")
            )
        self._windows.start_epoch(int(ops.convert_to_numpy(self.model.optimizer.iterations)))

    def _steps(self, batch):
        return self._windows.steps(batch)

    def _make_current(self):
        make_variables_current(self.model, self._wrappers)

    def on_epoch_end(self, epoch, logs=None):
        self._make_current()

    def on_train_end(self, logs=None):
        self._make_current()
        self._windows = None


def _reset_optimizer_slots(optimizer):
    """Zero the optimizer's per-weight state (momenta), leaving its step and learning rate."""
    for variable in optimizer.variables:
        if len(variable.shape) > 0:
            variable.assign(ops.zeros(variable.shape, variable.dtype))


@keras.saving.register_keras_serializable(package="keras_prune")
class LotteryTicket(_StepCounter):
    """Lottery-ticket training by iterative magnitude pruning with rewinding (Frankle & Carbin
    2019; rewinding to an early step: Frankle et al. 2020).

    At `rewind_step` every trainable weight is saved. After each round of `steps_per_round`
    steps, the weights are pruned to the next of `sparsities` (by the wrappers' criterion and
    `allocation`), the surviving weights are reset to exactly their saved values, all other
    trainable weights too, and the optimizer's momenta are cleared; then the next round trains.
    Use it instead of `kp.PruningCallback` and train at least
    `(len(sparsities) + 1) * steps_per_round` steps. The saved weights live in this callback,
    not in the model.

    Args:
        sparsities: sparsity after each round, non-decreasing, each in [0, 1).
        steps_per_round: training steps per round.
        rewind_step: step whose weights survivors are rewound to (0 = initialisation), smaller
            than `steps_per_round`.
        allocation: how sparsity is spread across layers (default per layer; lottery-ticket
            papers often use `kp.GlobalAllocation()`).
        reset_optimizer: clear optimizer momenta at each rewind.

    Example:

    ```python
    pruned = kp.prune(model)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    ticket = kp.LotteryTicket([0.5, 0.75, 0.9], steps_per_round=300, rewind_step=20)
    pruned.fit(x, y, epochs=20, callbacks=[ticket])
    ```
    """

    def __init__(
        self,
        sparsities,
        steps_per_round,
        rewind_step=0,
        allocation=None,
        reset_optimizer=True,
    ):
        super().__init__()
        self.schedule = IterativeSparsity(sparsities, steps_per_round, begin_step=steps_per_round)
        validation.check_int("rewind_step", rewind_step, minimum=0)
        if rewind_step >= steps_per_round:
            raise ValueError(
                "Expected `rewind_step` < `steps_per_round` (the weights are saved during the "
                f"first round). Received: rewind_step={rewind_step}, "
                f"steps_per_round={steps_per_round}"
            )
        self.sparsities = self.schedule.sparsities
        self.steps_per_round = steps_per_round
        self.rewind_step = rewind_step
        self.allocation = allocation_lib.get(allocation or "per_layer")
        self.reset_optimizer = bool(reset_optimizer)
        self.saved = None
        self.rounds_done = 0

    def on_train_begin(self, logs=None):
        self._wrappers = _binary_unstructured_wrappers(self.model, "LotteryTicket")
        for wrapper in self._wrappers:
            wrapper.mask_updates_attached = True

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
            self.prune_and_rewind(self.schedule.sparsity_at(due))

    def prune_and_rewind(self, sparsity):
        """Prune to `sparsity` from the current weights, then rewind everything to the saved
        weights (masked)."""
        if self.saved is None:
            raise RuntimeError(
                f"LotteryTicket has no saved weights: training never reached rewind_step="
                f"{self.rewind_step}. Start from step 0 (a fresh optimizer) or lower rewind_step."
            )
        self.allocation.apply(self._wrappers, sparsity)
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
            "steps_per_round": self.steps_per_round,
            "rewind_step": self.rewind_step,
            "allocation": keras.saving.serialize_keras_object(self.allocation),
            "reset_optimizer": self.reset_optimizer,
        }


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


class _DropAndGrow(_StepCounter):
    """Shared machinery of SET and RigL: random sparse start, periodic drop-and-grow."""

    def __init__(
        self,
        sparsity,
        update_every=100,
        drop_fraction=0.3,
        end_step=None,
        distribution="erk",
        seed=0,
    ):
        super().__init__()
        validation.check_sparsity("sparsity", sparsity)
        validation.check_int("update_every", update_every, minimum=1)
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
        self.update_every = update_every
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
        self._wrappers = _binary_unstructured_wrappers(self.model, caller)
        for wrapper in self._wrappers:
            if not isinstance(wrapper.granularity, granularity_lib.Unstructured):
                raise ValueError(
                    f"{caller} moves single connections; layer {wrapper.name!r} uses "
                    f"{wrapper.granularity!r}. Prune with granularity='unstructured'."
                )
            wrapper.mask_updates_attached = True
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
            wrapper.assign_masks(wrapper_masks, self.sparsity)
            wrapper.pruning_step.assign(0)

    def drop_fraction_at(self, step):
        """Cosine-decayed fraction of active connections moved at `step` (RigL's schedule)."""
        if self.end_step is None:
            return self.drop_fraction
        if step >= self.end_step:
            return 0.0
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def on_train_batch_begin(self, batch, logs=None):
        step = next(
            (s for s in reversed(self._steps(batch)) if s > 0 and s % self.update_every == 0),
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
            wrapper.assign_masks(wrapper_masks, self.sparsity)
            wrapper.pruning_step.assign(step)

    def prepare_growth(self):
        """Hook run once before each drop-and-grow (RigL collects gradients here)."""

    def grow_scores(self, wrapper, index, step):
        raise NotImplementedError

    def get_config(self):
        return {
            "sparsity": self.sparsity,
            "update_every": self.update_every,
            "drop_fraction": self.drop_fraction,
            "end_step": self.end_step,
            "distribution": self.distribution,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class SET(_DropAndGrow):
    """Sparse Evolutionary Training (Mocanu et al. 2018): train a sparse network from scratch,
    every `update_every` steps drop the smallest-magnitude fraction of each layer's connections
    and regrow as many at random positions (starting at zero).

    Training starts from random masks at `sparsity` distributed by ERK (or uniformly), applied to
    the freshly initialised weights. Use it instead of `kp.PruningCallback`.

    Args:
        sparsity: overall sparsity, held fixed, in [0, 1).
        update_every: steps between drop-and-grow updates.
        drop_fraction: fraction of active connections moved per update, in (0, 1).
        end_step: stop updating here; with it the fraction decays by a cosine (RigL's
            schedule). None keeps the fraction constant and never stops.
        distribution: "erk" or "uniform" per-layer sparsities.
        seed: seed of the random start and the random growth.

    Example:

    ```python
    sparse = kp.prune(model)
    sparse.compile("adam", "sparse_categorical_crossentropy")
    sparse.fit(x, y, epochs=20, callbacks=[kp.SET(0.9, update_every=50, end_step=2000)])
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
    see the training batch) by `kp.collect_gradients` (TensorFlow, torch or JAX). Use it instead
    of `kp.PruningCallback`.

    Args:
        sparsity: overall sparsity, held fixed, in [0, 1).
        calibration_data: `(x, y)` on which gradients are computed at each update.
        update_every: steps between drop-and-grow updates.
        drop_fraction: fraction of active connections moved per update, in (0, 1).
        end_step: stop updating here, with cosine decay of the fraction; None: never stop.
        distribution: "erk" or "uniform".
        seed: seed of the random start.
        calibration_batch_size: batch size for the gradient computation.

    Example:

    ```python
    sparse = kp.prune(model)
    sparse.compile("adam", "sparse_categorical_crossentropy")
    rigl = kp.RigL(0.9, calibration_data=(x[:256], y[:256]), update_every=50, end_step=2000)
    sparse.fit(x, y, epochs=20, callbacks=[rigl])
    ```
    """

    def __init__(self, sparsity, calibration_data=None, calibration_batch_size=128, **kwargs):
        super().__init__(sparsity, **kwargs)
        self.calibration_data = calibration_data
        self.calibration_batch_size = calibration_batch_size

    def on_train_begin(self, logs=None):
        if self.calibration_data is None:
            raise ValueError(
                "RigL grows connections by gradient magnitude: pass "
                "`calibration_data=(x, y)` (a few hundred training examples)."
            )
        super().on_train_begin(logs)

    def prepare_growth(self):
        x, y = self.calibration_data
        criteria_lib.collect_gradients(self.model, x, y, batch_size=self.calibration_batch_size)

    def grow_scores(self, wrapper, index, step):
        return ops.abs(wrapper.gradient_statistics[index].mean_gradient)

    def get_config(self):
        # calibration_data are arrays, not configuration: pass them again after loading.
        return {**super().get_config(), "calibration_batch_size": self.calibration_batch_size}


def penalize_masks(model, regularizer):
    """Add `regularizer` (e.g. `kp.regularizers.GateL0(1e-4)`) on every learnable mask's scores.

    The penalty joins `model.losses`, so `fit` minimises it with the task loss; its strength sets
    how hard the scores (gates) are pushed to close. It is attached to the variables, not saved:
    call this again after loading a model. Returns the number of score tensors penalized.

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.9), mask="sigmoid")
    kp.penalize_masks(pruned, kp.regularizers.GateL0(1e-4))
    ```
    """
    if regularizer is not None and not callable(regularizer):
        raise TypeError(
            "Expected `regularizer` to be a callable such as kp.regularizers.GateL0(1e-4) or "
            f"kp.regularizers.L1(1e-4), or None to remove. Received: regularizer={regularizer!r}"
        )
    scores = [score for wrapper in find_wrappers(model) for score in wrapper.scores]
    if not scores:
        raise ValueError(
            f"Model {model.name!r} has no learnable mask scores to penalize. Prune with "
            "mask='learnable' or mask='sigmoid' first."
        )
    for variable in scores:
        variable.regularizer = regularizer
    return len(scores)
