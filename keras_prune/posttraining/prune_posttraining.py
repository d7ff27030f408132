"""`prune_posttraining`: one-shot pruning of a trained model from calibration data, with no
retraining (SparseGPT, Wanda, magnitude).

How it runs, for a Sequential or Functional model (keras-hub backbones included):

1. `kp.prune` wraps every layer with a weight that is a matrix product of the layer's input
   (Dense, EinsumDense, Conv, a custom layer's rank-2 weight; a keras-hub transformer block is
   wrapped whole and pruned through those sublayers). Masks are installed by the mask engine,
   so the result fine-tunes with `kp.PruningCallback`, strips with `kp.strip` and exports.
2. The model's graph (`keras_prune.graph.tracing.trace`) is run call by call on the calibration
   batches (`replay.GraphRun`). At each wrapped layer the run stops: the layer is run once more
   on its real inputs while the input of each of its matrix products is recorded
   (`capture.recording_inputs`: inside a transformer block these are the inputs of its
   attention projections and feed-forward Dense layers), the sums `X^T X` are accumulated,
   every weight of the layer is pruned (and, with SparseGPT, its surviving weights updated),
   and only then does the run compute the layer's outputs, with the pruned weights, for the
   layers after it. Each layer's inputs thus come from the already pruned layers before it, and
   memory holds one layer's statistics and the activations crossing the current point of the
   graph, never the whole model's.

A subclassed model has no graph to walk: its weights are pruned from one pass of the unpruned
model over the calibration data (the report says so).
"""

import time

import keras
import numpy as np

from keras_prune.core import granularity as granularity_lib
from keras_prune.core import validation
from keras_prune.core.schedules import OneShotSparsity
from keras_prune.engine.engine import MaskEngine
from keras_prune.graph import tracing
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import find_wrappers
from keras_prune.posttraining import calibration as calibration_lib
from keras_prune.posttraining import methods as methods_lib
from keras_prune.posttraining.capture import recording_inputs
from keras_prune.posttraining.input_statistics import InputStatistics
from keras_prune.posttraining.matrix_view import matrix_view
from keras_prune.posttraining.replay import GraphRun
from keras_prune.posttraining.report import PosttrainingReport
from keras_prune.pruning.prune_strip import FILTERED, layer_filter, prune

CALLER = "kp.posttraining.prune_posttraining"


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def _sparsity(sparsity, granularity):
    if isinstance(granularity, granularity_lib.NofM):
        pattern = granularity.sparsity
        if sparsity is not None:
            validation.check_sparsity("sparsity", sparsity)
            if abs(float(sparsity) - pattern) > 1e-9:
                raise ValueError(
                    f"N:M granularity {granularity.n}:{granularity.m} fixes the sparsity at "
                    f"{pattern:g}. Received: sparsity={sparsity!r}. Leave `sparsity` out, or "
                    "pass the matching value."
                )
        return pattern
    return validation.check_sparsity("sparsity", 0.5 if sparsity is None else sparsity)


def _views(layer):
    """`[(PrunableWeight, view or None, reason or None)]` for a built layer."""
    return [(weight, *matrix_view(weight)) for weight in layouts.prunable_weights(layer)]


def _refusal(layer):
    """Why `layer` has nothing these methods prune, or None if it has."""
    if not layer.built:
        return None
    found = _views(layer)
    if any(view is not None for _, view, _ in found):
        return None
    reasons = sorted({reason for _, _, reason in found})
    return "post-training pruning prunes matrix products only: " + "; ".join(reasons)


def _check_pattern(views, granularity):
    """Raise, naming the weight, if N:M groups or blocks do not divide its input channels."""
    if isinstance(granularity, granularity_lib.NofM):
        size, what = granularity.m, f"N:M granularity {granularity.n}:{granularity.m}"
    elif isinstance(granularity, granularity_lib.Block):
        size, what = granularity.block_shape[1], f"block {granularity.block_shape}"
    else:
        return
    for view in views:
        channels = view.input_channels
        if channels is not None and channels % size:
            raise ValueError(
                f"{CALLER}: {what} does not divide the {channels} input channels of weight "
                f"{view.weight.name!r}: groups of {size} along the input channels must tile "
                f"them. Use an M (or block width) that divides {channels}, or leave the layer "
                "out with `filters=`."
            )


class _Pruner:
    """Prunes the wrappers of one model, one wrapper (layer) at a time."""

    def __init__(self, model, method, sparsity, granularity, report):
        self.model = model
        self.method = method
        self.sparsity = sparsity
        self.granularity = granularity
        self.report = report
        self.engine = MaskEngine(model)
        self.plans = {}
        for wrapper in self.engine.wrappers:
            plan = []
            for target in wrapper.targets:
                view, reason = matrix_view(target)
                if view is None:
                    self.report.left_dense[target.variable.path] = reason
                plan.append(view)
            self.plans[id(wrapper)] = plan
        _check_pattern(
            [view for plan in self.plans.values() for view in plan if view is not None],
            granularity,
        )

    def statistics_for(self, wrappers, run_all_batches):
        """Run `run_all_batches()` with the matrix inputs of `wrappers` recorded; returns
        `{(id(wrapper), target index): InputStatistics}`."""
        statistics, by_owner, owners = {}, {}, []
        for wrapper in wrappers:
            for index, view in enumerate(self.plans[id(wrapper)]):
                if view is None:
                    continue
                key = (id(wrapper), index)
                statistics[key] = InputStatistics(view.inputs, self.method.full_statistics)
                owner = view.weight.owner
                if id(owner) not in by_owner:
                    owners.append(owner)
                by_owner.setdefault(id(owner), []).append((key, view))

        def record(owner, inputs):
            for key, view in by_owner[id(owner)]:
                statistics[key].update(view.rows(inputs))

        with recording_inputs(owners, record):
            run_all_batches()
        return statistics

    def prune_wrapper(self, wrapper, statistics, started):
        masks = []
        rows = []
        for index, (target, view) in enumerate(
            zip(wrapper.targets, self.plans[id(wrapper)], strict=True)
        ):
            if view is None:
                masks.append((np.ones(target.variable.shape, np.float32), None))
                continue
            kernel = _numpy(target.variable)
            stats = statistics.get((id(wrapper), index))
            if self.method.needs_data and stats is not None and stats.rows == 0:
                raise ValueError(
                    f"{CALLER}: layer {wrapper.name!r} never ran its weight "
                    f"{target.variable.path!r} on the calibration data, so it cannot be pruned "
                    "from its inputs. Leave it out with `filters=`."
                )
            updated, mask, _ = self.method.prune(
                view, kernel, stats, self.sparsity, self.granularity
            )
            error = None
            if updated is not None:
                error = _relative_error(view, kernel, updated, stats)
                target.variable.assign(updated.astype(kernel.dtype))
            masks.append((mask, None))
            rows.append(
                {
                    "layer": wrapper.name,
                    "weight": target.variable.path,
                    "shape": tuple(kernel.shape),
                    "sparsity": float(1.0 - mask.mean()),
                    "error": error,
                    "seconds": 0.0,
                }
            )
        self.engine.install(wrapper, masks, self.sparsity, step=0)
        seconds = time.perf_counter() - started
        for row in rows:
            row["seconds"] = seconds
        self.report.weights.extend(rows)


def _relative_error(view, before, after, statistics):
    """`||(W - W') X||^2 / ||W X||^2` on the calibration inputs (from `X^T X`)."""
    if statistics is None or not statistics.full:
        return None
    dense = view.matrix(before).astype(np.float64)
    delta = dense - view.matrix(after)
    gram = statistics.gram
    total = float(np.einsum("ij,ij->", dense @ gram, dense))
    change = float(np.einsum("ij,ij->", delta @ gram, delta))
    return change / total if total > 0 else 0.0


def prune_posttraining(
    model,
    calibration_data=None,
    method="sparsegpt",
    sparsity=None,
    granularity="unstructured",
    filters=None,
    batch_size=32,
    verbose=1,
):
    """Prune a trained model in one shot from calibration data, without retraining.

    Layers are pruned in order, each from inputs computed by the already pruned layers before
    it. SparseGPT also updates the weights that stay so that each layer's output is
    reconstructed; Wanda ranks weights by `|w|` times the norm of their input; magnitude by `|w|`
    alone (it needs no data). The weights pruned are the matrix products: Dense, EinsumDense
    (attention projections), Conv1D/2D/3D (as matrix products over image patches) and rank-2
    weights of layers with `get_prunable_weights()`, also inside composite layers such as
    keras-hub transformer blocks. Everything else is left dense, with the reason, in the report.

    The model returned holds `kp.PruneWrapper`s with the masks installed (schedule
    `kp.schedules.OneShotSparsity`): fine-tune it with `kp.PruningCallback`, `kp.strip` it,
    export it.

    Args:
        model: a built, trained model (Sequential, Functional, keras-hub backbone or subclassed;
            without PruneWrappers). Left untouched.
        calibration_data: x, `(x, y)`, or an iterable of batches (a `tf.data.Dataset`): examples
            of the model's inputs (a few hundred are typical). Not needed for "magnitude".
        method: "sparsegpt", "wanda", "magnitude", or a `kp.posttraining.SparseGPT(...)` /
            `Wanda()` / `Magnitude()`.
        sparsity: fraction of each weight to prune, in [0, 1); default 0.5. With N:M it is
            fixed by the pattern and may be left out.
        granularity: "unstructured", "2:4", `kp.granularity.NofM(n, m)` or
            `kp.granularity.Block((1, c))`.
        filters: which layers to prune: None (every layer with a matrix product), a regex on the
            layer name, a list of regexes, or a callable `layer -> bool` (as in `kp.prune`).
        batch_size: examples per calibration batch when `calibration_data` holds arrays.
        verbose: 0 silent, 1 a progress bar naming the layer being pruned, with time left.

    Returns:
        The pruned model, with `pruning_report` (what was wrapped) and `posttraining_report`
        (a `kp.posttraining.PosttrainingReport`: per weight, sparsity, output error and time).

    Example:

    ```python
    pruned = kp.posttraining.prune_posttraining(model, x, method="sparsegpt", sparsity=0.5)
    print(pruned.posttraining_report)
    plain = kp.strip(pruned)
    ```
    """
    started = time.perf_counter()
    method = methods_lib.get(method)
    granularity = granularity_lib.get(granularity)
    if not isinstance(
        granularity, (granularity_lib.Unstructured, granularity_lib.NofM, granularity_lib.Block)
    ):
        raise ValueError(
            f"{CALLER} prunes weights unstructured, N:M or in blocks. Received: "
            f"granularity={granularity!r}. For channels use kp.prune_channels; for attention "
            "heads and feed-forward neurons kp.surgery.heads / kp.surgery.ffn."
        )
    sparsity = _sparsity(sparsity, granularity)
    validation.check_choice("verbose", verbose, {0, 1, 2})
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{CALLER} expects a built keras.Model. Received: model={model!r} "
            f"(of type {type(model).__name__})"
        )
    if find_wrappers(model):
        raise ValueError(
            f"{CALLER}: model {model.name!r} already holds kp.PruneWrappers. Pass the trained "
            "model itself, or `kp.strip(model)` / `kp.shrink(model)` of a pruned one."
        )
    calibration = None
    if method.needs_data:
        calibration = calibration_lib.calibration_batches(
            calibration_data, model, batch_size, caller=CALLER
        )
    selected = layer_filter(filters)
    refusals = {}

    def chosen(layer):
        if not selected(layer):
            return False
        reason = _refusal(layer)
        if reason is not None:
            refusals[layer.name] = reason
        return reason is None

    try:
        pruned = prune(
            model, schedule=OneShotSparsity(sparsity), granularity=granularity, filters=chosen
        )
    except ValueError as error:
        if "found nothing to prune" not in str(error):
            raise
        raise ValueError(
            f"{CALLER} found no layer with a matrix product to prune in model {model.name!r} "
            f"(Dense, EinsumDense, Conv, or a custom layer's rank-2 weight).\n{error}"
        ) from error
    for name, reason in refusals.items():
        if pruned.pruning_report.skipped.get(name) == FILTERED:
            pruned.pruning_report.skipped[name] = reason
    report = PosttrainingReport(
        method=method.name or type(method).__name__,
        sparsity=sparsity,
        granularity=repr(granularity),
        samples=0 if calibration is None else calibration.num_samples,
    )
    report.left_dense.update(refusals)
    pruner = _Pruner(pruned, method, sparsity, granularity, report)
    wrappers = [w for w in pruner.engine.wrappers if w.built]
    progress = keras.utils.Progbar(len(wrappers), verbose=verbose, unit_name="layer", interval=0)
    if calibration is None:
        for done, wrapper in enumerate(wrappers):
            _announce(progress, done, wrapper)
            pruner.prune_wrapper(wrapper, {}, time.perf_counter())
    elif tracing.is_graph_model(pruned):
        _prune_in_graph_order(pruned, pruner, wrappers, calibration, progress)
    else:
        report.sequential = False
        statistics = pruner.statistics_for(
            wrappers, lambda: [pruned(batch, training=False) for batch in calibration.batches]
        )
        for done, wrapper in enumerate(wrappers):
            _announce(progress, done, wrapper)
            pruner.prune_wrapper(wrapper, statistics, time.perf_counter())
    progress.unit_name = "layer"
    progress.update(len(wrappers), finalize=True)
    pruner.engine.attach()
    report.seconds = time.perf_counter() - started
    pruned.posttraining_report = report
    return pruned


def _announce(progress, done, wrapper):
    progress.unit_name = f"layer, now {wrapper.name}"
    progress.update(done)


def _prune_in_graph_order(pruned, pruner, wrappers, calibration, progress):
    graph = tracing.trace(pruned)
    run = GraphRun(graph, [calibration.flat(i) for i in range(len(calibration.batches))])
    pending = {id(wrapper): wrapper for wrapper in wrappers}
    done = 0
    for call in graph.calls:
        wrapper = pending.pop(id(call.operation), None)
        if wrapper is not None:
            _announce(progress, done, wrapper)
            started = time.perf_counter()
            statistics = pruner.statistics_for(
                [wrapper], lambda c=call: [run.call_on(c, i) for i in range(run.num_batches)]
            )
            pruner.prune_wrapper(wrapper, statistics, started)
            done += 1
        run.advance(call)
    for wrapper in pending.values():
        raise ValueError(
            f"{CALLER}: layer {wrapper.name!r} is not called in model {pruned.name!r}'s graph, "
            "so it sees no calibration inputs. Leave it out with `filters=`."
        )
