"""PNG charts for reports: curves, bar charts and a scatter with a highlighted front.

Generic on purpose: each function takes plain numbers and labels and writes one PNG, so any
report (sensitivity curves, a latency table's bottlenecks, a Pareto front, a benchmark) draws
with the same look. matplotlib is an optional dependency (`pip install keras-prune[plots]`);
it is imported on first use, with the non-interactive Agg backend, so nothing opens a window.
"""

import os

from keras_prune.core import validation

INSTALL_HINT = "pip install keras-prune[plots]"
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_HIGHLIGHT = "#e15759"


def pyplot():
    """matplotlib's `pyplot` on the Agg backend, or an ImportError naming the install command.

    Example:

    ```python
    plt = kp.reporting.plots.pyplot()
    ```
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            f"Drawing PNG charts needs matplotlib, an optional dependency: `{INSTALL_HINT}` "
            "(or `pip install matplotlib`)."
        ) from error
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    path = validation.check_path("path", path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def line_curves(curves, path, *, title="", xlabel="", ylabel="", log_y=False, legend_limit=12):
    """One line per curve, drawn on shared axes, saved as a PNG.

    Args:
        curves: `{label: (xs, ys)}`.
        path: the PNG to write (its directory is created).
        title: the text above the plot.
        xlabel: the x axis label.
        ylabel: the y axis label.
        log_y: a symmetric-log y axis (for drops that span orders of magnitude).
        legend_limit: with more curves than this, only the `legend_limit` reaching the
            highest y are named in the legend.

    Returns:
        `path`.

    Example:

    ```python
    curves = {"conv1": ([0, .5, .9], [0, .01, .2])}
    kp.reporting.plots.line_curves(curves, "curves.png", xlabel="sparsity")
    ```
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    ranked = sorted(curves.items(), key=lambda item: -max(item[1][1], default=0))
    named = {label for label, _ in ranked[:legend_limit]}
    for index, (label, (xs, ys)) in enumerate(curves.items()):
        axes.plot(
            list(xs),
            list(ys),
            marker="o",
            markersize=3,
            linewidth=1.2,
            color=_PALETTE[index % len(_PALETTE)],
            label=label if label in named else None,
            alpha=1.0 if label in named else 0.35,
        )
    if log_y:
        axes.set_yscale("symlog", linthresh=1e-3)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if named:
        axes.legend(fontsize=7, ncol=2 if len(named) > 6 else 1)
    return _save(figure, path)


def bar_chart(labels, values, path, *, title="", xlabel="", highlight=0, limit=30):
    """Horizontal bars, largest on top, the `highlight` largest in a warning colour.

    Args:
        labels: one name per bar.
        values: one number per bar.
        path: the PNG to write.
        title: the text above the plot.
        xlabel: the x axis label.
        highlight: how many of the largest bars to colour (the bottlenecks).
        limit: draw at most this many bars (the largest).

    Returns:
        `path`.

    Example:

    ```python
    kp.reporting.plots.bar_chart(
        ["conv1", "dense"], [120.0, 15.5], "latency.png", xlabel="us", highlight=1
    )
    ```
    """
    labels, values = list(labels), [float(value) for value in values]
    if len(labels) != len(values):
        raise ValueError(
            f"Expected one value per label. Received: {len(labels)} labels, {len(values)} values"
        )
    order = sorted(range(len(values)), key=lambda i: -values[i])[:limit]
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.28 * len(order) + 1.2)))
    shown = list(reversed(order))
    colours = [_HIGHLIGHT if rank < highlight else _PALETTE[0] for rank in range(len(order))]
    axes.barh(
        [labels[i] for i in shown],
        [values[i] for i in shown],
        color=list(reversed(colours)),
    )
    axes.tick_params(axis="y", labelsize=7)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def scatter_front(points, front, path, *, title="", xlabel="", ylabel="", labels=None, marked=()):
    """Every point in grey, the front's points highlighted and joined, saved as a PNG.

    Args:
        points: `[(x, y)]`, every evaluated point.
        front: indices into `points` of the front (e.g. the Pareto-optimal ones).
        path: the PNG to write.
        title: the text above the plot.
        xlabel: the x axis label.
        ylabel: the y axis label.
        labels: optional `{index: text}` written next to those points.
        marked: `[(x, y, text)]` reference points drawn as stars (e.g. a baseline).

    Returns:
        `path`.

    Example:

    ```python
    kp.reporting.plots.scatter_front([(1, .9), (2, .95), (2, .8)], [0, 1], "front.png", xlabel="ms")
    ```
    """
    points = [(float(x), float(y)) for x, y in points]
    front = sorted(front, key=lambda i: points[i][0])
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    if points:
        axes.scatter(*zip(*points, strict=True), s=14, color="#bbbbbb", label="evaluated")
    if front:
        xs, ys = zip(*(points[i] for i in front), strict=True)
        axes.plot(xs, ys, color=_HIGHLIGHT, linewidth=1, alpha=0.6)
        axes.scatter(xs, ys, s=30, color=_HIGHLIGHT, label="front", zorder=3)
    for x, y, text in marked:
        axes.scatter([x], [y], marker="*", s=140, color=_PALETTE[0], zorder=4, label=text)
    for index, text in (labels or {}).items():
        axes.annotate(
            str(text), points[index], fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)
