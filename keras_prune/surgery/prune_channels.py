"""`prune_channels`: one-shot structured pruning of a trained model to a sparsity or a budget."""

import keras
import numpy as np

from keras_prune.core import criteria as criteria_lib
from keras_prune.core import validation
from keras_prune.core.validation import layer_filter
from keras_prune.engine import gradients as gradients_lib
from keras_prune.engine.gradients import check_calibration_data
from keras_prune.graph import channel_importance, rewire
from keras_prune.graph import groups as groups_lib
from keras_prune.layers.wrapper import find_wrappers
from keras_prune.pruning.prune_strip import strip
from keras_prune.surgery import zeros
from keras_prune.surgery.shrink import shrink
from keras_prune.surgery.shrunk_cost import ShrunkCost


def _removed_count(size, sparsity):
    return int(np.round(size * sparsity))


def _copy_model(model):
    """A plain copy of `model` (wrappers stripped) whose weights can be zeroed freely."""
    if find_wrappers(model):
        return strip(model)
    return rewire.copy_model(model)


def _kept_counts(groups, selected, sparsity, round_to):
    """Channels each group keeps after removing `sparsity` of them (rounded up as `shrink`
    does)."""
    kept = {}
    for group in groups:
        count = group.size
        if selected[group.index]:
            count -= _removed_count(group.size, sparsity)
        if round_to:
            count = min(group.size, -(-count // round_to) * round_to)
        kept[group.index] = count
    return kept


def prune_channels(
    model,
    sparsity=None,
    *,
    target_macs=None,
    target_params=None,
    criterion="magnitude",
    norm="l2",
    round_to=None,
    filters=None,
    calibration_data=None,
    loss=None,
    verbose=0,
):
    """Remove the least important channels of every prunable group and shrink the model.

    The same share (`sparsity`) of channels is removed from every prunable channel group (see
    `kp.graph.channel_groups`), the lowest-scoring by the criterion, or the smallest share that
    meets `target_macs` / `target_params`. The chosen channels are zeroed on a copy of the model
    (`model` is not changed) and `kp.shrink` removes them, so the result is a smaller plain
    Keras model to fine-tune.

    Args:
        model: a built Sequential or Functional model (with or without `kp.PruneWrapper`s).
        sparsity: share of each prunable group's channels to remove, in [0, 1).
        target_macs: instead of `sparsity`: the largest acceptable MACs per example.
        target_params: instead of `sparsity`: the largest acceptable parameter count.
        criterion: how channels are ranked, a `kp.criteria` name or instance: "magnitude"
            (default: the `norm` of every kernel entry a channel owns, summed over the group),
            "bn_scale" (|gamma| of the group's BatchNormalizations), "taylor" (|sum of
            w * dL/dw| over the channel's weights; needs `calibration_data`), ...
        norm: "l2" (default) or "l1", for criteria that add entries up by a norm.
        round_to: keep a multiple of this many channels per group (e.g. 8 for SIMD).
        filters: which groups to prune: None (all), a regex / list of regexes / callable on
            layers; a group is pruned only if every layer that creates its channels matches.
        calibration_data: for gradient criteria: `(x, y)` (or a dataset) the loss gradients are
            averaged over.
        loss: for gradient criteria, if `model` is not compiled: the loss (name or object).
        verbose: 1 shows the budget search and the scoring as progress bars.

    Returns:
        The shrunk `keras.Model`, with `shrink_report` (a `ShrinkReport`), `pruned_channels`
        (`{group index: removed channel indices}`) and `pruned_sparsity` attributes.

    Example:

    ```python
    small = kp.prune_channels(model, 0.5, criterion="bn_scale", round_to=8)
    print(kp.reporting.compare(model, small))
    small.compile("adam", "sparse_categorical_crossentropy")
    small.fit(x, y, epochs=2)   # fine-tune
    ```
    """
    validation.check_graph_model("model", model)
    verbose = validation.check_int("verbose", verbose, minimum=0, maximum=2)
    given = [
        name
        for name, value in (
            ("sparsity", sparsity),
            ("target_macs", target_macs),
            ("target_params", target_params),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "Expected exactly one of `sparsity`, `target_macs`, `target_params`. Received: "
            f"sparsity={sparsity!r}, target_macs={target_macs!r}, "
            f"target_params={target_params!r}"
        )
    chosen = criteria_lib.get(criterion)
    validation.check_choice("norm", norm, {"l1", "l2"})
    if sparsity is not None:
        sparsity = validation.check_real(
            "sparsity",
            sparsity,
            low=0.0,
            high=1.0,
            high_open=True,
            hint="It is the share of each group's channels to remove.",
        )
    if target_macs is not None:
        target_macs = validation.check_real("target_macs", target_macs, low=0.0)
    if target_params is not None:
        target_params = validation.check_real("target_params", target_params, low=0.0)
    if round_to is not None:
        round_to = validation.check_int("round_to", round_to, minimum=1)
    if chosen.needs_gradients and calibration_data is None:
        raise ValueError(
            f"criterion={criterion!r} ranks channels by the loss gradient: pass "
            "`calibration_data=(x, y)` (and `loss=` if the model is not compiled, e.g. "
            "loss='sparse_categorical_crossentropy'). Received: calibration_data=None."
        )
    if calibration_data is not None:
        check_calibration_data(calibration_data, model=model)
    selected_layer = layer_filter(filters)
    working = _copy_model(model)
    statistics = None
    if chosen.needs_gradients:
        statistics = gradients_lib.gradient_statistics(
            working, calibration_data, loss=loss, verbose=verbose
        )
    analysis = groups_lib.analyze(working)
    groups = analysis.groups()
    selected = {
        group.index: group.prunable
        and all(
            selected_layer(groups_lib.unwrap(member.layer))
            for member in group.members
            if member.role == "output"
        )
        for group in groups
    }
    candidates = [group for group in groups if selected[group.index]]
    if not candidates:
        raise ValueError(
            f"Model {model.name!r} has no channel group that can be pruned: "
            + "; ".join(f"{g.layer_names}: {g.reason}" for g in groups if not g.prunable)
        )
    smallest = min(group.size for group in candidates)
    largest_sparsity = (smallest - 1) / smallest
    if sparsity is not None:
        emptied = [g for g in candidates if _removed_count(g.size, sparsity) >= g.size]
        if emptied:
            raise ValueError(
                f"sparsity={sparsity!r} would remove every channel of group {emptied[0].index} "
                f"({emptied[0].size} channels: {', '.join(emptied[0].layer_names)}). "
                f"The largest feasible sparsity is {largest_sparsity:.4f}; or leave that group "
                "out with `filters=`."
            )
    else:
        key, target = (
            ("macs", target_macs) if target_macs is not None else ("params", target_params)
        )
        estimator = ShrunkCost(analysis, groups)

        def cost(candidate):
            return estimator.cost(_kept_counts(groups, selected, candidate, round_to))[key]

        floor = cost(largest_sparsity)
        if target < floor:
            raise ValueError(
                f"target_{key}={target!r} cannot be reached without emptying a layer: the "
                f"smallest reachable is {floor:,} (sparsity={largest_sparsity:.4f} of every "
                "prunable group). Raise the target."
            )
        progress = keras.utils.Progbar(40, verbose=verbose, unit_name="bisection step")
        low, high = 0.0, largest_sparsity
        if cost(low) <= target:
            high = 0.0
        for step in range(40):
            middle = (low + high) / 2
            if cost(middle) <= target:
                high = middle
            else:
                low = middle
            progress.update(step + 1, [("sparsity", high)])
        sparsity = high
    removed = {}
    progress = keras.utils.Progbar(len(candidates), verbose=verbose, unit_name="group")
    for position, group in enumerate(candidates):
        count = _removed_count(group.size, sparsity)
        if count:
            scores = channel_importance.channel_scores(group, chosen, norm, statistics)
            channels = np.sort(np.argsort(scores, kind="stable")[:count])
            zeros.zero_group_channels(group, channels)
            removed[group.index] = channels
        progress.update(position + 1)
    small = shrink(working, round_to=round_to)
    small.pruned_channels = removed
    small.pruned_sparsity = sparsity
    return small
