"""The mask engine: the one owner of mask state.

Everything that changes masks goes through `MaskEngine`: `kp.PruningCallback` and
`kp.pruning.update_masks` (schedules), `kp.prune_once` (one shot), `kp.methods.LotteryTicket`,
`kp.methods.SET` and
`kp.methods.RigL` (masks they compute themselves), allocations (which only compute). The engine
decides
which wrappers are due, scores their weights by their criterion, spreads the sparsity with the
allocation, couples channel masks by dependency group so that `kp.shrink` removes exactly what
is masked, and installs the result through `PruneWrapper.install`, the only writer of a
wrapper's masks and pruning state.
"""

import contextlib
import dataclasses
import logging
import math
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import schedules as schedules_lib
from keras_prune.engine.coupling import ChannelCoupling
from keras_prune.graph import tracing as trace_lib
from keras_prune.layers.wrapper import find_wrappers


def wrappers_or_raise(model, caller, how="kp.prune(model, schedule=...)"):
    """The model's wrappers; raises naming `caller` and the fix (`how`) if it has none."""
    wrappers = find_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"{caller} found no kp.PruneWrapper in model {model.name!r}. Make the model prunable "
            f"first: `model = {how}`."
        )
    return wrappers


def wrappers_or_warn(model, caller):
    """The model's wrappers; warns (and returns []) if there are none: a training script shared
    by pruned and unpruned models keeps working, as with tfmot, but the slip is visible."""
    wrappers = find_wrappers(model)
    if not wrappers:
        warnings.warn(
            f"{caller} found no kp.PruneWrapper in model {model.name!r}, so it does nothing. "
            "To prune, make the model prunable first: `model = kp.prune(model, schedule=...)`.",
            stacklevel=3,
        )
    return wrappers


def is_follower(wrapper):
    """Whether `wrapper` only follows its channel group (a BatchNormalization's scales at
    channel granularity): it is never ranked on its own."""
    return isinstance(wrapper.granularity, granularity_lib.Channel) and isinstance(
        wrapper.layer, keras.layers.BatchNormalization
    )


def is_coupled(wrapper):
    """Whether `wrapper`'s masks are set per channel dependency group."""
    return isinstance(wrapper.granularity, granularity_lib.Channel) and not (
        wrapper.mask_type.learnable
    )


def check_finite(wrapper, step):
    """Raise, naming the layer and weight, if a pruned weight holds NaN or inf: ranking would
    keep them as the most important and the logged sparsity would be meaningless."""
    for target in wrapper.targets:
        if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(target.variable)))):
            raise ValueError(
                f"Layer {wrapper.name!r}: weight {target.variable.path!r} holds NaN or inf at "
                f"step {step}, so its mask cannot be ranked. Training diverged before this mask "
                "update: lower the learning rate, clip gradients (`clipnorm=`), or check the "
                "data for non-finite values."
            )


class MaskEngine:
    """Computes and installs the masks of one model's wrappers.

    Masks of the wrappers updated together are computed by one traced function
    (`tf.function` on TensorFlow, `jax.jit` on JAX; eager on torch) instead of one eager op per
    tensor; the result is exactly the eager one. What cannot be traced (gradient criteria,
    allocations with Python-level rules, criteria whose function is not traceable) runs eagerly.

    Args:
        model: the model holding the `kp.PruneWrapper`s.
        wrappers: the wrappers to drive (default: all of the model's).
        compile_masks: "auto" (default) traces the mask computation from its second use with the
            same wrappers and allocation (so a one-shot prune does not pay for tracing), True
            from its first use, False never.

    Example:

    ```python
    engine = kp.engine.MaskEngine(pruned)
    engine.update(step=0)            # what kp.PruningCallback does before each batch
    engine.prune_to(0.8)             # what kp.prune_once does
    ```
    """

    def __init__(self, model, wrappers=None, compile_masks="auto"):
        if not (compile_masks == "auto" or isinstance(compile_masks, bool)):
            raise ValueError(
                'Expected `compile_masks` to be "auto", True or False. '
                f"Received: compile_masks={compile_masks!r}"
            )
        self.model = model
        self.wrappers = find_wrappers(model) if wrappers is None else list(wrappers)
        self.compile_masks = compile_masks
        self._coupling = None
        # One traced mask computation per set of wrappers updated together (usually all), or
        # None where tracing failed (then the masks are computed eagerly).
        self._compiled = {}
        self._uses = {}
        #: `{id(wrapper): (zeros, total)}` of the pruned weights of the wrappers the last
        #: compiled update installed, counted inside the traced call (no device read per weight).
        self.zero_counts = {}
        #: Why the last update ran eagerly (None if it ran compiled).
        self.eager_reason = None

    @property
    def coupling(self):
        """The channel coupling of the model (None if no wrapper prunes channels, or if the
        model is subclassed and has no graph to read groups from)."""
        if self._coupling is None:
            channel = [w for w in self.wrappers if is_coupled(w) and w.built]
            if channel and trace_lib.is_graph_model(self.model):
                self._coupling = ChannelCoupling(self.model, channel)
            else:
                self._coupling = False
        return self._coupling or None

    def attach(self):
        """Tell the wrappers that something drives their masks (training is then allowed)."""
        for wrapper in self.wrappers:
            wrapper.driven = True

    def due(self, step, wrappers=None):
        """The built, non-follower wrappers whose schedule updates masks at `step`."""
        candidates = self.wrappers if wrappers is None else wrappers
        return [
            wrapper
            for wrapper in candidates
            if wrapper.built
            and not is_follower(wrapper)
            and schedules_lib.decide(wrapper.schedule, step)[0]
        ]

    def update(self, step, allocation=None, wrappers=None):
        """Apply the schedules at optimizer step `step`; returns the wrappers updated.

        `allocation` None follows what each wrapper declares (`kp.prune(allocation=...)`):
        wrappers declaring the same allocation share it, the others are set per layer. An
        allocation given here applies to every due wrapper instead."""
        step = int(step)
        due = self.due(step, wrappers)
        if not due:
            return []
        sparsities = {id(w): schedules_lib.decide(w.schedule, step)[1] for w in due}
        return self._install_all(due, sparsities, step, allocation)

    def prune_to(self, sparsity, allocation=None, step=0):
        """Set every wrapper's masks now at `sparsity`, whatever the schedules say (with the
        declared allocations if `allocation` is None, as `update`)."""
        wrappers = [w for w in self.wrappers if w.built and not is_follower(w)]
        sparsities = {id(w): float(sparsity) for w in wrappers}
        return self._install_all(wrappers, sparsities, int(step), allocation)

    def install(self, wrapper, masks, sparsity, step=None):
        """Install masks a method computed itself (drop-and-grow, lottery tickets)."""
        wrapper.install(masks, sparsity, step)

    # -- internals -------------------------------------------------------------------------

    def _install_all(self, wrappers, sparsities, step, allocation):
        self.zero_counts = {}
        if allocation is not None:
            return self._install_group(wrappers, sparsities, step, allocation)
        updated = []
        for declared, members in declared_allocations(wrappers):
            updated += self._install_group(members, sparsities, step, declared)
        return updated

    def _install_group(self, wrappers, sparsities, step, allocation):
        allocation = allocation_lib.get(allocation or "per_layer")
        coupling = self.coupling
        coupled = [w for w in wrappers if coupling is not None and coupling.covers(w)]
        coupled_ids = {id(w) for w in coupled}
        alone = [w for w in wrappers if id(w) not in coupled_ids]
        updated = []
        if alone:
            if any(w.mask_type.learnable for w in alone) and not isinstance(
                allocation, allocation_lib.PerLayerAllocation
            ):
                learnable = next(w for w in alone if w.mask_type.learnable)
                raise ValueError(
                    f"Layer {learnable.name!r} uses a learnable mask, whose top-k is chosen in "
                    "the forward pass per layer; allocations install binary masks. Use "
                    "mask='binary' with an allocation, or drop `allocation=` for learnable masks."
                )
            asked = [sparsities[id(w)] for w in alone]
            allocation.check(
                [[math.prod(t.variable.shape) for t in w.targets] for w in alone], asked
            )
            per_layer = self._compiled_allocate(alone, allocation, asked, step)
            if per_layer is None:
                for wrapper in alone:
                    check_finite(wrapper, step)
                per_layer = allocation.allocate([w.layer_scores() for w in alone], asked)
            if per_layer is not INSTALLED:
                for wrapper, masks in zip(alone, per_layer, strict=True):
                    wrapper.install(masks, sparsities[id(wrapper)], step)
            updated += alone
        if coupled:
            for wrapper in coupled:
                check_finite(wrapper, step)
            updated += coupling.update(coupled, sparsities, step, allocation)
        return updated

    def _compiled_allocate(self, wrappers, allocation, asked, step):
        """The masks of `wrappers` from one traced call, or None when they are to be computed
        eagerly (not compilable, not yet worth tracing, or tracing failed)."""
        self.eager_reason = _not_compilable(wrappers, allocation)
        if self.eager_reason or self.compile_masks is False:
            self.eager_reason = self.eager_reason or "compile_masks=False"
            return None
        key = (tuple(id(w) for w in wrappers), repr(allocation))
        self._uses[key] = self._uses.get(key, 0) + 1
        if self.compile_masks == "auto" and self._uses[key] < 2:
            self.eager_reason = "first use (compile_masks='auto' traces from the second)"
            return None
        if self._compiled.get(key, True) is None:
            self.eager_reason = "tracing failed"
            return None
        # Tracing time grows faster than the graph: an allocation that sets each layer on its
        # own is traced in chunks of a few layers, one function each.
        size = _CHUNK if allocation.separable else len(wrappers)
        chunks = [
            range(start, min(start + size, len(wrappers)))
            for start in range(0, len(wrappers), size)
        ]
        found = []
        for chunk in chunks:
            part = [wrappers[index] for index in chunk]
            chunk_key = (key, chunk.start)
            tracing = chunk_key not in self._compiled
            if tracing:
                self._compiled[chunk_key] = self._compiled_masks(part, allocation)
            arguments = (
                # TensorFlow reads the variables inside the traced call (captured, no argument
                # to flatten and match on each call); jax.jit is pure, so JAX gets their values.
                None
                if _installs_in_graph()
                else [variable.value for variable in _state_read(part)],
                # NumPy, converted by the compiled call itself: `ops.convert_to_tensor` costs
                # ~0.1 ms per argument, a noticeable share of an update made at every step.
                np.asarray([asked[index] for index in chunk], "float32"),
                np.asarray(step, "int64"),
            )
            try:
                with _quiet_tensorflow(tracing):
                    per_layer, finite = self._compiled[chunk_key](*arguments)
            except Exception as error:  # noqa: BLE001 - anything the tracer refuses runs eagerly
                # The eager path raises the error again if it was not the tracer's.
                self._compiled[key] = None
                self.eager_reason = f"tracing failed: {type(error).__name__}: {error}"
                return None
            found.append((part, per_layer, finite))
        masks = []
        for part, per_layer, finite in found:
            # On TensorFlow a chunk whose weights are all finite was installed in the traced
            # call; one that is not was left as it was, and this raises naming the weight.
            _raise_if_not_finite(part, ops.convert_to_numpy(finite), step)
            if _installs_in_graph():
                counts = ops.convert_to_numpy(per_layer)
                for wrapper, (zeros, total) in zip(part, counts, strict=True):
                    self.zero_counts[id(wrapper)] = (int(zeros), int(total))
            else:
                masks.extend(per_layer)
        return INSTALLED if _installs_in_graph() else masks

    def _compiled_masks(self, wrappers, allocation):
        """A traced function `(state values or None, sparsities, step) -> (masks per wrapper,
        finite flags)` computing every wrapper's masks in one call instead of one eager op at a
        time.

        On TensorFlow the same call also installs them (`PruneWrapper.install` traced: its
        assignments run in the graph, only if every weight is finite) and returns, instead of
        the masks, each wrapper's `(zeros, total)` count of its pruned weights."""
        state = _state_read(wrappers)

        def compute(values, sparsities, step):
            reading = (
                contextlib.nullcontext()
                if values is None
                else keras.StatelessScope(state_mapping=list(zip(state, values, strict=True)))
            )
            with reading:
                layers = [_in_order(w.layer_scores()) for w in wrappers]
                asked = [sparsities[index] for index in range(len(wrappers))]
                masks = allocation.allocate(layers, asked)
                finite = ops.stack(
                    [ops.all(ops.isfinite(t.variable)) for w in wrappers for t in w.targets]
                )
            if not _installs_in_graph():
                return masks, finite
            import tensorflow as tf

            def install():
                # One wrapper after the other: each install multiplies its weights by the
                # masks (a float32 copy of them), which the graph would otherwise make for
                # every wrapper at once.
                counts = []
                for index, wrapper in enumerate(wrappers):
                    with tf.control_dependencies(counts[-1:]):
                        wrapper.install(masks[index], asked[index], step)
                        counts.append(zero_count(wrapper))
                return ops.stack(counts)

            def leave():
                return ops.zeros((len(wrappers), 2), "int64")

            return tf.cond(ops.all(finite), install, leave), finite

        return backend_compile(compute)


def declared_allocations(wrappers):
    """`[(allocation or None, wrappers declaring it)]`, in the order first declared: wrappers
    whose declared allocations have the same config share one ranking."""
    found = {}
    for wrapper in wrappers:
        declared = wrapper.allocation
        # Class and config (an Allocation's repr is its config): serializing each wrapper's
        # allocation instead cost ~0.1 ms per wrapper at every update.
        key = None if declared is None else (type(declared), repr(declared))
        found.setdefault(key, (declared, []))[1].append(wrapper)
    return list(found.values())


# Returned by `_compiled_allocate` when the traced call installed the masks itself.
INSTALLED = object()


def _installs_in_graph():
    """Whether traced mask updates install the masks too: on TensorFlow variables are assigned
    inside `tf.function`; `jax.jit` is pure, so on JAX the masks come back and are installed
    eagerly (an assignment there is cheap)."""
    return keras.backend.backend() == "tensorflow"


def zero_count(wrapper):
    """`[zeros, total]` (int64) of the weights `wrapper` prunes, masks applied; NaN and inf
    count as not zero. Runs eagerly or traced."""
    zeros = total = 0
    targets = {id(target.variable) for target in wrapper.targets}
    if wrapper.masks_in_forward_pass:
        values = [value for v, value in wrapper.effective_weights() if id(v) in targets]
    else:
        # Binary masks are held in the weights themselves (zero where masked): count them as
        # they are rather than through a masked copy of each.
        values = [target.variable for target in wrapper.targets]
    for value in values:
        # int32 per tensor (4 bytes per weight, not int64's 8), summed in int64.
        zeros += ops.cast(ops.sum(ops.cast(ops.equal(value, 0), "int32")), "int64")
        total += math.prod(value.shape)
    return ops.stack([ops.cast(zeros, "int64"), ops.cast(total, "int64")])


# Layers per traced function for allocations that set each layer on its own.
_CHUNK = 8


@contextlib.contextmanager
def _quiet_tensorflow(quiet):
    """Silence TensorFlow's "frequent retracing" warning while the chunks are first traced:
    each chunk is its own function, traced once."""
    if not quiet:  # every call after the first: setting a logger's level clears its caches
        yield
        return
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _in_order(layer):
    """`layer` (a `LayerScores`) whose `rescore(index, after)` waits for `after` in a
    TensorFlow graph: there every op starts once its inputs are ready, so a ranking that
    computes each tensor's scores again in each pass would otherwise compute them all at
    once, every tensor's scores and intermediates alive together (4 bytes per weight or more).
    A control dependency keeps it to one tensor at a time. JAX always sorts (no rescoring)."""
    if layer.rescore is None or keras.backend.backend() != "tensorflow":
        return layer
    import tensorflow as tf

    rescore = layer.rescore

    def ordered(index, after=None):
        if after is None:
            return rescore(index)
        with tf.control_dependencies([after]):
            return rescore(index)

    return dataclasses.replace(layer, rescore=ordered)


def _state_read(wrappers):
    """The variables a mask computation reads: pruned weights and learnable scores."""
    state = []
    for wrapper in wrappers:
        state.extend(target.variable for target in wrapper.targets)
        state.extend(wrapper.scores)
    return state


def _not_compilable(wrappers, allocation):
    """Why the masks cannot be computed in one traced call (None if they can): they can when
    the criteria read only the weights (gradient statistics live outside the variables) and the
    allocation is written in tensor operations."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return f"the {keras.backend.backend()} backend runs eagerly"
    if not allocation.compilable:
        return f"{type(allocation).__name__} is not compilable"
    for wrapper in wrappers:
        if wrapper.criterion.needs_gradients:
            return f"criterion of {wrapper.name!r} reads gradient statistics"
    return None


def _raise_if_not_finite(wrappers, finite, step):
    """Raise, as `check_finite` does, for the first wrapper whose flag in `finite` (one per
    target, in order) is False."""
    position = 0
    for wrapper in wrappers:
        count = len(wrapper.targets)
        if not all(bool(flag) for flag in finite[position : position + count]):
            check_finite(wrapper, step)  # raises, naming the layer and the weight
        position += count


def backend_compile(function):
    """`function` traced once by the backend's compiler (tf.function, jax.jit); as it is on
    torch, where eager mode is the default."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # No autograph: the traced code is the eager code, op for op.
        traced = tf.function(function, autograph=False)
        concrete = None

        def call(*arguments):
            # The engine calls each traced function with arguments of one signature: after
            # the first call its concrete function is called directly, which skips matching
            # the arguments against the trace cache.
            nonlocal concrete
            if concrete is None:
                concrete = traced.get_concrete_function(*arguments)
            return concrete(*arguments)

        return call
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


_ENGINES = weakref.WeakKeyDictionary()


def engine_for(model):
    """The `MaskEngine` of `model`, made once and kept while the model lives."""
    wrappers = find_wrappers(model)
    engine = _ENGINES.get(model)
    if engine is None or [id(w) for w in engine.wrappers] != [id(w) for w in wrappers]:
        engine = MaskEngine(model, wrappers)
        _ENGINES[model] = engine
    return engine


def zero_counts(wrappers, known=None):
    """`{id(wrapper): (zeros, total)}` of the weights each built, non-follower wrapper prunes,
    masks applied; taken from `known` (e.g. `MaskEngine.zero_counts`) where it has them, else
    counted now (one small device read per wrapper)."""
    known = known or {}
    counts = {}
    for wrapper in wrappers:
        if not wrapper.built or is_follower(wrapper):
            continue
        counted = known.get(id(wrapper))
        if counted is None:
            counted = tuple(int(v) for v in ops.convert_to_numpy(zero_count(wrapper)))
        counts[id(wrapper)] = counted
    return counts


def sparsity_of(counts):
    """The fraction of zeros in `zero_counts(...)` (0.0 if it counts no weight)."""
    zeros = sum(zeros for zeros, _ in counts.values())
    total = sum(total for _, total in counts.values())
    return zeros / total if total else 0.0


def realised_sparsity(wrappers):
    """The true fraction of zeros among the weights `wrappers` prune, masks applied (0.0 if
    none). Weights that are NaN or inf count as not zero."""
    return sparsity_of(zero_counts(wrappers))
