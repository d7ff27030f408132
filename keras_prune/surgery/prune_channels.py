"""`prune_channels`: one-shot structured pruning of a trained model to a fraction or a budget."""

import keras
import numpy as np

from keras_prune.graph import groups as groups_lib
from keras_prune.graph import rewire, tracing
from keras_prune.layers.wrapper import find_wrappers
from keras_prune.reporting import macs as macs_lib
from keras_prune.surgery import channel_importance
from keras_prune.surgery.shrink import shrink


def _removed_count(size, fraction):
    return int(np.round(size * fraction))


def _copy_model(model):
    """A plain copy of `model` (wrappers stripped) whose weights can be zeroed freely."""
    if find_wrappers(model):
        from keras_prune.pruning import strip

        return strip(model)
    return rewire.copy_model(model)


def loss_gradients(model, x, y, loss, batch_size=32):
    """`{id(variable): mean dL/dw}` for the trainable weights of `model` over `(x, y)`.

    Backend-neutral: one plain SGD step with learning rate 1 on a copy of the model moves every
    weight by exactly minus its gradient (batch statistics of BatchNorm layers are used, as in
    training). `model` itself is not changed or recompiled.

    Args:
        model: a built Sequential or Functional model.
        x, y: a batch of data (arrays) and targets.
        loss: a Keras loss (name or object), as for `model.compile`.
        batch_size: examples per gradient step; gradients are averaged over the steps.

    Example:

    ```python
    gradients = kp.channel_pruning.loss_gradients(model, x[:256], y[:256], "mse")
    scores = kp.group_scores(kp.channel_groups(model)[0], "taylor", gradients)
    ```
    """
    copy = _copy_model(model)
    originals = [w for w in model.weights if w.trainable]
    copies = [w for w in copy.weights if w.trainable]
    if len(originals) != len(copies) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(originals, copies, strict=True)
    ):
        raise ValueError(f"Could not line up the weights of a copy of model {model.name!r}.")
    copy.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss)
    start_values = copy.get_weights()
    totals = [np.zeros(tuple(w.shape), np.float64) for w in copies]
    count = len(x)
    if count == 0:
        raise ValueError("Expected at least one example in `x` for the loss gradients.")
    for begin in range(0, count, batch_size):
        before = [np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in copies]
        copy.train_on_batch(x[begin : begin + batch_size], y[begin : begin + batch_size])
        share = min(batch_size, count - begin) / count
        for total, old, variable in zip(totals, before, copies, strict=True):
            total += share * (old - keras.ops.convert_to_numpy(variable))
        copy.set_weights(start_values)
    return {id(w): total for w, total in zip(originals, totals, strict=True)}


class _Estimator:
    """Params / MACs of the shrunk model for a given number of kept channels per group."""

    def __init__(self, analysis, groups):
        self.analysis = analysis
        self.groups = groups
        self.calls = tracing.trace(analysis.model).calls
        group_of_root = {group.root: group for group in groups}
        # id(variable) -> {axis: [(group or None, repeat, size)]}
        self.axes = {}
        for atom, member in analysis.members:
            root = analysis.atoms.root(atom)
            entry = (group_of_root.get(root), member.repeat, analysis.atoms.size[root])
            self.axes.setdefault(id(member.variable), {}).setdefault(member.axis, []).append(entry)
        self.weights = analysis.model.weights

    def size_function(self, kept):
        def size_of(variable):
            shape = list(variable.shape)
            for axis, entries in self.axes.get(id(variable), {}).items():
                shape[axis] = sum(
                    repeat * (kept[group.index] if group is not None else size)
                    for group, repeat, size in entries
                )
            return int(np.prod(shape, dtype=np.int64))

        return size_of

    def cost(self, kept):
        size_of = self.size_function(kept)
        macs = sum(macs_lib.call_macs(call, size_of)[0] for call in self.calls)
        params = sum(size_of(weight) for weight in self.weights)
        return {"macs": macs, "params": params}


def _kept_counts(groups, selected, fraction, round_to):
    """Channels each group keeps after removing `fraction` (rounded up as `shrink` does)."""
    kept = {}
    for group in groups:
        count = group.size
        if selected[group.index]:
            count -= _removed_count(group.size, fraction)
        if round_to:
            count = min(group.size, -(-count // round_to) * round_to)
        kept[group.index] = count
    return kept


def prune_channels(
    model,
    fraction=None,
    *,
    target_macs=None,
    target_params=None,
    criterion="l2",
    round_to=None,
    filters=None,
    data=None,
    loss=None,
):
    """Remove the least important channels of every prunable group and shrink the model.

    The same fraction of channels is removed from every prunable channel group (see
    `kp.channel_groups`), the lowest-scoring ones by group importance, or the smallest fraction
    that meets `target_macs` / `target_params`. The chosen channels are zeroed on a copy of the
    model (`model` is not changed) and `kp.shrink` removes them, so the result is a smaller plain
    Keras model to fine-tune.

    Args:
        model: a built Sequential or Functional model (with or without `kp.PruneWrapper`s).
        fraction: fraction of each prunable group's channels to remove, in [0, 1).
        target_macs: instead of `fraction`: the largest acceptable MACs per example.
        target_params: instead of `fraction`: the largest acceptable parameter count.
        criterion: group importance: "l1", "l2" (norms of the kernel entries a channel owns,
            summed over the group), "bn_scale" (|gamma| of the group's BatchNormalizations) or
            "taylor" (|sum of w * dL/dw| over the channel's weights; needs `data` and `loss`).
        round_to: keep a multiple of this many channels per group (e.g. 8 for SIMD).
        filters: which groups to prune: None (all), a regex / list of regexes / callable on
            layers; a group is pruned only if every layer that creates its channels matches.
        data: for "taylor": `(x, y)` arrays the loss gradients are averaged over.
        loss: for "taylor": the training loss (name or `keras.losses.Loss`).

    Returns:
        The shrunk `keras.Model`, with `shrink_report` (a `ShrinkReport`) and `pruned_channels`
        (`{group index: removed channel indices}`) attributes.

    Example:

    ```python
    small = kp.prune_channels(model, fraction=0.5, criterion="bn_scale", round_to=8)
    print(kp.macs.compare(model, small))
    small.compile("adam", "sparse_categorical_crossentropy")
    small.fit(x, y, epochs=2)   # fine-tune
    ```
    """
    from keras_prune.pruning.prune_strip import layer_filter

    given = [
        name
        for name, value in (
            ("fraction", fraction),
            ("target_macs", target_macs),
            ("target_params", target_params),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "Expected exactly one of `fraction`, `target_macs`, `target_params`. Received: "
            f"fraction={fraction!r}, target_macs={target_macs!r}, target_params={target_params!r}"
        )
    if criterion not in channel_importance.CRITERIA:
        raise ValueError(
            f"Expected `criterion` to be one of {list(channel_importance.CRITERIA)}. "
            f"Received: criterion={criterion!r}"
        )
    if fraction is not None and (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 <= fraction < 1
    ):
        raise ValueError(
            f"Expected `fraction` in [0, 1) (share of each group's channels to remove). "
            f"Received: fraction={fraction!r}"
        )
    if criterion == "taylor" and (data is None or loss is None):
        raise ValueError(
            "criterion='taylor' ranks channels by the loss gradient: pass `data=(x, y)` and "
            f"`loss=` (e.g. loss='sparse_categorical_crossentropy'). Received: data="
            f"{'None' if data is None else 'given'}, loss={loss!r}"
        )
    selected_layer = layer_filter(filters)
    working = _copy_model(model)
    gradients = None
    if criterion == "taylor":
        gradients = loss_gradients(working, data[0], data[1], loss)
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
    largest_fraction = (smallest - 1) / smallest
    if fraction is not None:
        emptied = [g for g in candidates if _removed_count(g.size, fraction) >= g.size]
        if emptied:
            raise ValueError(
                f"fraction={fraction!r} would remove every channel of group {emptied[0].index} "
                f"({emptied[0].size} channels: {', '.join(emptied[0].layer_names)}). "
                f"The largest feasible fraction is {largest_fraction:.4f}; or leave that group "
                "out with `filters=`."
            )
    else:
        key, target = (
            ("macs", target_macs)
            if target_macs is not None
            else (
                "params",
                target_params,
            )
        )
        estimator = _Estimator(analysis, groups)

        def cost(candidate):
            return estimator.cost(_kept_counts(groups, selected, candidate, round_to))[key]

        floor = cost(largest_fraction)
        if target < floor:
            raise ValueError(
                f"target_{key}={target!r} cannot be reached without emptying a layer: the "
                f"smallest reachable is {floor:,} (fraction={largest_fraction:.4f} of every "
                "prunable group). Raise the target."
            )
        low, high = 0.0, largest_fraction
        if cost(low) <= target:
            high = 0.0
        for _ in range(40):
            middle = (low + high) / 2
            if cost(middle) <= target:
                high = middle
            else:
                low = middle
        fraction = high
    removed = {}
    for group in candidates:
        count = _removed_count(group.size, fraction)
        if count == 0:
            continue
        scores = channel_importance.group_scores(group, criterion, gradients)
        channels = np.sort(np.argsort(scores, kind="stable")[:count])
        channel_importance.zero_group_channels(group, channels)
        removed[group.index] = channels
    small = shrink(working, round_to=round_to)
    small.pruned_channels = removed
    small.pruned_fraction = fraction
    return small
