"""`summary`: a per-layer table of prunable weights, nonzeros, sparsity and bytes."""

import dataclasses

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers


@dataclasses.dataclass
class WeightRow:
    """One prunable weight in a summary."""

    layer: str
    weight: str
    shape: tuple
    params: int
    nonzeros: int
    pruned: bool

    @property
    def sparsity(self):
        return 1.0 - self.nonzeros / self.params if self.params else 0.0


def _leaf_layers(model):
    """Layers in order, descending into nested models but not into wrappers."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, PruneWrapper) or not getattr(layer, "layers", None):
            yield layer
        else:
            yield from _leaf_layers(layer)


def weight_rows(model):
    """`WeightRow`s for every prunable weight of `model` (pruned or plain).

    For a wrapped layer the nonzeros are those of the effective weight (mask applied).
    """
    validation.check_model("model", model)
    rows = []
    for layer in _leaf_layers(model):
        if isinstance(layer, PruneWrapper):
            values = {
                id(v): keras.ops.convert_to_numpy(value) for v, value in layer.effective_weights()
            }
            targets = layer.targets
            pruned = True
        else:
            targets = layouts.prunable_weights(layer)
            values = {}
            pruned = False
        for target in targets:
            value = values.get(id(target.variable))
            if value is None:
                value = keras.ops.convert_to_numpy(target.variable)
            rows.append(
                WeightRow(
                    layer=layer.name,
                    weight=target.variable.name,
                    shape=tuple(target.variable.shape),
                    params=int(value.size),
                    nonzeros=int(np.count_nonzero(value)),
                    pruned=pruned,
                )
            )
    return rows


def _format_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


def summary(model, print_fn=print):
    """Print (and return) a per-layer table: shape, params, nonzeros, sparsity and float32 bytes
    stored dense vs. nonzeros only, with totals over prunable weights and the whole model.

    Works on pruned models (counting the masked, effective weights) and on plain ones. To put
    two models side by side (before / after `kp.shrink`), use `kp.reporting.compare(a, b)`.

    Args:
        model: a Keras model, pruned or not.
        print_fn: where the table goes (`print` by default; None to only return it).

    Example:

    ```python
    kp.summary(pruned)
    ```
    """
    validation.check_model("model", model)
    if print_fn is not None:
        validation.check_callable("print_fn", print_fn)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model to summarize. Received: model={model!r} "
            f"(of type {type(model).__name__})"
        )
    if isinstance(print_fn, keras.Model):
        raise TypeError(
            "kp.summary describes one model; to put two side by side use "
            "`print(kp.reporting.compare(model_a, model_b))`."
        )
    if print_fn is not None and not callable(print_fn):
        raise TypeError(
            f"Expected `print_fn` to be a callable or None. Received: print_fn={print_fn!r}"
        )
    rows = weight_rows(model)
    header = ("Layer", "Weight", "Shape", "Params", "Nonzero", "Sparsity", "Dense", "Nonzero bytes")
    table = [
        (
            row.layer + (" *" if row.pruned else ""),
            row.weight,
            "x".join(str(d) for d in row.shape),
            f"{row.params:,}",
            f"{row.nonzeros:,}",
            f"{row.sparsity:6.1%}",
            _format_bytes(4 * row.params),
            _format_bytes(4 * row.nonzeros),
        )
        for row in rows
    ]
    params = sum(row.params for row in rows)
    nonzeros = sum(row.nonzeros for row in rows)
    total_sparsity = 1.0 - nonzeros / params if params else 0.0
    table.append(
        (
            "Total prunable",
            "",
            "",
            f"{params:,}",
            f"{nonzeros:,}",
            f"{total_sparsity:6.1%}",
            _format_bytes(4 * params),
            _format_bytes(4 * nonzeros),
        )
    )
    widths = [max(len(str(line[i])) for line in [header, *table]) for i in range(len(header))]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))

    def render(line):
        return "  ".join(
            str(cell).ljust(width) if i < 3 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        )

    lines = [f'Pruning summary: "{model.name}"', rule, render(header), rule]
    lines += [render(line) for line in table[:-1]]
    lines += [rule, render(table[-1]), rule]
    wrappers = find_wrappers(model)
    marked = f"{len(wrappers)} layer(s) being pruned, marked *; " if wrappers else ""
    lines.append(f"{marked}bytes are float32.")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
