"""PNG charts of a pruning run: the schedule against realised sparsity, per-layer sparsity, and
the model before and after.

Built on `keras_prune.reporting.plots` (same look, same optional matplotlib: a clear
ImportError with `pip install keras-prune[plots]` when it is missing). Each function takes what
a run already has (a schedule, `model.fit`'s `History`, a model, a table of numbers) and writes
one PNG.
"""

import os

from keras_prune.core import validation
from keras_prune.reporting import plots
from keras_prune.reporting.summary import weight_rows

_DENSE, _PRUNED = "#4e79a7", "#f28e2b"


def _save(figure, path):
    path = validation.check_path("path", path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plots.pyplot().close(figure)
    return path


def scheduled_sparsity(schedule, last_step):
    """`(steps, sparsities)`: the sparsity masks hold at every step from 0 to `last_step`.

    Masks change only at the steps where `schedule.should_update(step)` is true, so the curve
    is a staircase that follows `schedule.sparsity_at` at those steps and holds in between.

    Args:
        schedule: a `kp.PruningSchedule`.
        last_step: the last training step to draw.

    Example:

    ```python
    schedule = kp.PolynomialDecay(0.0, 0.9, 0, 100, frequency=10)
    steps, sparsities = kp.reporting.pruning_plots.scheduled_sparsity(schedule, 120)
    ```
    """
    last_step = validation.check_int("last_step", last_step, minimum=0)
    held, steps, sparsities = 0.0, [], []
    for step in range(last_step + 1):
        if schedule.should_update(step):
            held = float(schedule.sparsity_at(step))
        steps.append(step)
        sparsities.append(held)
    return steps, sparsities


def realised_sparsity_history(history, steps_per_epoch):
    """`(steps, sparsities)`: the `sparsity` that `kp.PruningCallback` logged at each epoch end.

    Args:
        history: the `keras.callbacks.History` returned by `model.fit`, or its `history` dict.
        steps_per_epoch: training steps (batches) per epoch.

    Example:

    ```python
    history = pruned.fit(x, y, batch_size=32, callbacks=[kp.PruningCallback()], verbose=0)
    steps, sparsities = kp.reporting.pruning_plots.realised_sparsity_history(
        history, steps_per_epoch=2
    )
    ```
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "sparsity" not in logs:
        raise ValueError(
            "Expected the History of a `model.fit` run with `kp.PruningCallback()` (it logs "
            f"`sparsity`). Received: {sorted(logs) if isinstance(logs, dict) else logs!r}"
        )
    steps_per_epoch = validation.check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    sparsities = [float(value) for value in logs["sparsity"]]
    return [steps_per_epoch * (epoch + 1) for epoch in range(len(sparsities))], sparsities


def plot_sparsity_schedule(schedule, path, *, history=None, steps_per_epoch=None, last_step=None):
    """The schedule's sparsity step by step and, given a `History`, the sparsity realised.

    Args:
        schedule: the `kp.PruningSchedule` the model was pruned with.
        path: the PNG to write.
        history: optional `History` (or its dict) of a `fit` with `kp.PruningCallback`.
        steps_per_epoch: required with `history`: batches per epoch.
        last_step: last step drawn; default: the end of training, or the schedule's end.

    Returns:
        `path`.

    Example:

    ```python
    schedule = kp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, frequency=1)
    pruned = kp.prune(model, schedule=schedule)
    pruned.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = pruned.fit(
        x, y, epochs=3, batch_size=32, callbacks=[kp.PruningCallback()], verbose=0
    )
    kp.reporting.pruning_plots.plot_sparsity_schedule(
        schedule, "sparsity.png", history=history, steps_per_epoch=2
    )
    ```
    """
    realised = None
    if history is not None:
        if steps_per_epoch is None:
            raise ValueError("Expected `steps_per_epoch` with `history`. Received: None")
        realised = realised_sparsity_history(history, steps_per_epoch)
    if last_step is None:
        ends = [max(schedule.end_step, schedule.begin_step)]
        if realised and realised[0]:
            ends.append(realised[0][-1])
        last_step = max(ends)
    plt = plots.pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    steps, sparsities = scheduled_sparsity(schedule, last_step)
    axes.step(steps, sparsities, where="post", color=_DENSE, label="schedule (masks hold this)")
    if realised:
        axes.plot(*realised, "o", color=_PRUNED, label="realised (PruningCallback, epoch end)")
    axes.set_ylim(-0.02, 1.0)
    axes.set_xlabel("training step")
    axes.set_ylabel("sparsity")
    axes.set_title(f"{type(schedule).__name__}: sparsity over training")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_layer_sparsity(model, path, *, title=None):
    """One bar per prunable weight: its sparsity (masks applied), pruned layers highlighted.

    Args:
        model: a Keras model, pruned (wrapped) or stripped.
        path: the PNG to write.
        title: default: `Per-layer sparsity: <model name>`.

    Returns:
        `path`.

    Example:

    ```python
    kp.reporting.pruning_plots.plot_layer_sparsity(pruned, "layers.png")
    ```
    """
    rows = weight_rows(model)
    plt = plots.pyplot()
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.35 * len(rows) + 1.2)))
    labels = [f"{row.layer} ({row.params:,})" for row in rows][::-1]
    values = [row.sparsity for row in rows][::-1]
    colours = [_PRUNED if row.sparsity > 0 else _DENSE for row in rows][::-1]
    axes.barh(labels, values, color=colours)
    for index, value in enumerate(values):
        axes.text(min(value, 0.88) + 0.01, index, f"{value:.1%}", va="center", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("sparsity (fraction of zero weights); label: layer (weights)")
    axes.set_title(title or f"Per-layer sparsity: {model.name}")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def plot_before_after(rows, path, *, labels=("before", "after"), title="Before and after pruning"):
    """One panel per metric, two bars each: the value before and after.

    Args:
        rows: `[(metric name, before, after)]`; rows whose values are None are left out.
        path: the PNG to write.
        labels: names of the two bars.
        title: figure title.

    Returns:
        `path`.

    Example:

    ```python
    rows = [("accuracy", 0.97, 0.96), ("file bytes", 600_000, 90_000)]
    kp.reporting.pruning_plots.plot_before_after(rows, "ba.png")
    ```
    """
    rows = [(name, a, b) for name, a, b in rows if a is not None and b is not None]
    if not rows:
        raise ValueError("Expected at least one (metric, before, after) row with two numbers.")
    plt = plots.pyplot()
    columns = min(3, len(rows))
    lines = -(-len(rows) // columns)
    figure, grid = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.8 * lines), squeeze=False)
    for axes, (name, before, after) in zip(grid.flat, rows, strict=False):
        bars = axes.bar(labels, [before, after], color=[_DENSE, _PRUNED])
        for bar, value in zip(bars, (before, after), strict=True):
            text = f"{value:.4g}" if isinstance(value, float) and value < 10 else f"{value:,.0f}"
            axes.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axes.set_title(name, fontsize=9)
        axes.set_ylim(0, max(before, after) * 1.18 or 1)
        axes.tick_params(labelsize=8)
    for axes in list(grid.flat)[len(rows) :]:
        axes.axis("off")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
