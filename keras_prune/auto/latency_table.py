"""The latency table `kp.auto.profile` measures, and how it is read back.

`Profile` holds one `BlockCost` row per block: each block's latency (or, for `mcu`, file bytes)
measured at a few channel sparsities. `Profile.predict(model, kept)` reads the latency of any
per-group channel count from it, interpolating each block's measurements over its
multiply-accumulates and activation traffic, and scales the sum by the end-to-end check
(`Profile.error`, within `TOLERANCE`). `peak_activation_bytes` predicts how the TFLM arena moves
when channels are removed. Measuring the table is `keras_prune.auto.latency_profile`'s work.
"""

import dataclasses

import numpy as np

from keras_prune.auto import blocks as blocks_lib
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.reporting import text_tables

TOLERANCE = 0.25


class _Channels:
    """Channel counts of a model's tensors for given kept counts per channel group."""

    def __init__(self, model):
        self.analysis = groups_lib.analyze(model)
        self.groups = self.analysis.groups()
        self.by_root = {group.root: group for group in self.groups if group.prunable}

    def ratio(self, tensor, kept):
        layout = self.analysis.layouts.get(id(tensor))
        if layout is None or not kept:
            return 1.0
        full = now = 0
        for atom, size, _ in layout.offsets():
            group = self.by_root.get(self.analysis.atoms.root(atom))
            full += size
            now += size if group is None else kept.get(group.index, size)
        return now / full if full else 1.0


@dataclasses.dataclass
class BlockCost:
    """One block's row of the table.

    Attributes:
        name: the block's first layer (or operation).
        kinds: the layer classes it fuses, e.g. `["Conv2D", "BatchNormalization", "ReLU"]`.
        input_shapes, output_shape: at batch size 1.
        macs, params, elements: multiply-accumulates, weights and activation elements (read
            and written) at full size.
        latency_us: measured latency at full size (None for `mcu`).
        bytes: its weights' share of the file.
        ops: the TFLite ops of its file; `unsupported`: those TFLM lacks (for `mcu`).
        points: `[{"sparsity", "work", "params", "latency_us", "bytes"}]`, one per measured
            channel sparsity: the lookup table.
        mixing: MACs scale with input x output channels (Conv, Dense).
    """

    name: str
    kinds: list
    input_shapes: list
    output_shape: list
    macs: int
    params: int
    elements: int
    latency_us: float | None
    bytes: int
    ops: list
    unsupported: list
    points: list
    mixing: bool
    input_names: list = dataclasses.field(default_factory=list)
    output_names: list = dataclasses.field(default_factory=list)


def _interpolate(points, key, x_key, x):
    """The block's `key` at `x_key == x`: linear between measured points, proportional below
    a single point, linear extrapolation below the lowest two (never negative)."""
    usable = sorted(
        ((p[x_key], p[key]) for p in points if p.get(key) is not None), key=lambda p: p[0]
    )
    if not usable:
        return None
    xs = np.array([p[0] for p in usable], np.float64)
    ys = np.array([p[1] for p in usable], np.float64)
    if len(xs) == 1 or xs[-1] == xs[0]:
        return float(ys[-1] * (x / xs[-1])) if xs[-1] else float(ys[-1])
    if x < xs[0]:
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0]) if xs[1] != xs[0] else 0.0
        return float(max(ys[0] + slope * (x - xs[0]), 0.0))
    return float(np.interp(x, xs, ys))


@dataclasses.dataclass
class Profile:
    """A model's per-block cost table on one runtime, checked against the whole model.

    Attributes:
        target: "mobile", "mobile-int8" or "mcu"; `threads`, `xnnpack`: the LiteRT settings.
        blocks: `BlockCost` rows in graph order.
        checks: one per measured sparsity: `{"sparsity", "table_us", "measured_us", "error",
            "file_bytes"}` (latency keys None for `mcu`).
        arena_bytes: the whole model's smallest TFLM arena (`mcu`), else None.
        unsupported_ops: TFLite ops of the model TFLM lacks (`mcu`).
        seconds: time the profile took; `cached_blocks`: blocks read from the cache.
        remeasured_error: when the table read from the cache missed the tolerance and every
            block was measured again (`profile(remeasure=True)`), the error of the cached
            table; else None.

    Example:

    ```python
    table = kp.auto.profile(model)
    print(table.error, table.latency_us)
    kp.auto.Profile.from_dict(table.to_dict())  # a JSON-friendly round trip
    ```
    """

    target: str
    threads: int
    xnnpack: bool
    blocks: list
    checks: list
    file_bytes: int
    arena_bytes: int | None = None
    unsupported_ops: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    clock: str = "wall"
    cached_blocks: int = 0
    measured_blocks: int = 0
    peak_activation_bytes: int = 0
    remeasured_error: float | None = None

    # -- the check -----------------------------------------------------------------------

    @property
    def latency_us(self):
        """The whole model's measured latency at full size (None for `mcu`)."""
        return self.checks[0]["measured_us"] if self.checks else None

    @property
    def table_latency_us(self):
        return self.checks[0]["table_us"] if self.checks else None

    @property
    def error(self):
        """Largest relative error of the table's sum against the measured whole model."""
        errors = [abs(c["error"]) for c in self.checks if c["error"] is not None]
        return max(errors) if errors else None

    @property
    def within_tolerance(self):
        return self.error is None or self.error <= TOLERANCE

    # -- predictions ---------------------------------------------------------------------

    def predict(self, model, kept=None, calibrated=True):
        """Predicted `{"latency_us", "file_bytes", "arena_bytes"}` of `model` (the profiled
        model or an equal copy) with `kept[group index]` channels kept per channel group
        (`kp.graph.channel_groups(model)` order; None or missing groups: all channels).

        `calibrated` scales the latency sum by measured / table at full size, so the
        prediction agrees with the whole model where it was measured.
        """
        channels = _channels_of(model)
        graph_blocks = {block.name: block for block in blocks_lib.blocks(model)}
        latency, weights = 0.0, 0.0
        for row in self.blocks:
            block = graph_blocks.get(row.name)
            if block is None:
                continue
            r_in = (
                float(np.mean([channels.ratio(t, kept) for t in block.inputs]))
                if block.inputs
                else 1.0
            )
            r_out = channels.ratio(block.outputs[0], kept) if block.outputs else 1.0
            scale = r_in * r_out if row.mixing else r_out
            in_elements = sum(blocks_lib.elements_of(t) for t in block.inputs)
            work = row.macs * scale + in_elements * r_in + (row.elements - in_elements) * r_out
            if row.latency_us is not None:
                latency += _interpolate(row.points, "latency_us", "work", work) or 0.0
            weights += _interpolate(row.points, "bytes", "params", row.params * scale) or 0.0
        result = {"latency_us": None, "file_bytes": None, "arena_bytes": None}
        if self.checks and self.checks[0]["table_us"]:
            factor = (
                self.checks[0]["measured_us"] / self.checks[0]["table_us"] if calibrated else 1.0
            )
            result["latency_us"] = latency * factor
        overhead = self.file_bytes - sum(row.bytes for row in self.blocks)
        result["file_bytes"] = int(weights + overhead)
        if self.arena_bytes is not None:
            offset = self.arena_bytes - self.peak_activation_bytes
            result["arena_bytes"] = int(
                peak_activation_bytes(model, kept, activation_itemsize(self.target), channels)
                + offset
            )
        return result

    # -- reports -------------------------------------------------------------------------

    def rows(self):
        """Table rows (dicts), the slowest block first."""
        key = "latency_us" if self.target != "mcu" else "bytes"
        ordered = sorted(self.blocks, key=lambda row: -(getattr(row, key) or 0))
        return [dataclasses.asdict(row) for row in ordered]

    def table(self, limit=25, width=120):
        """The most expensive blocks as a text table, with the check against the model."""
        from rich.table import Table

        timed = self.target != "mcu"
        settings = (
            f"LiteRT {'XNNPACK' if self.xnnpack else 'built-in kernels'}, {self.threads} thread(s)"
            if timed
            else "int8, TensorFlow Lite Micro"
        )
        table = Table(title=f"Profile on {self.target} ({settings})")
        for column in ("block", "ops", "input", "MACs", "params"):
            table.add_column(column, justify="left" if column in ("block", "ops") else "right")
        if timed:
            table.add_column("latency (us)", justify="right")
            table.add_column("share", justify="right")
        table.add_column("bytes", justify="right")
        total = sum(row.latency_us or 0 for row in self.blocks) or 1.0
        for row in self.rows()[:limit]:
            cells = [
                row["name"][:28],
                ",".join(dict.fromkeys(row["ops"]))[:30] or "-",
                "x".join(str(d) for d in row["input_shapes"][0]) if row["input_shapes"] else "",
                f"{row['macs']:,}",
                f"{row['params']:,}",
            ]
            if timed:
                cells += [f"{row['latency_us']:.1f}", f"{100 * row['latency_us'] / total:.1f}%"]
            cells.append(f"{row['bytes']:,}")
            table.add_row(*cells)
        lines = [text_tables.as_text(table, width).rstrip()]
        for check in self.checks:
            if check["measured_us"] is not None:
                lines.append(
                    f"{check['sparsity']:.0%} of the channels removed: table sum "
                    f"{check['table_us']:.1f} us, whole model {check['measured_us']:.1f} us "
                    f"(error {100 * check['error']:+.1f}%), file {check['file_bytes']:,} bytes"
                )
        if self.arena_bytes is not None:
            lines.append(f"TFLM arena: {self.arena_bytes:,} bytes")
        if self.unsupported_ops:
            lines.append(f"ops TFLM lacks: {', '.join(self.unsupported_ops)}")
        lines.append(
            f"{len(self.blocks)} blocks ({self.measured_blocks} measured, "
            f"{self.cached_blocks} from the cache) in {self.seconds:.1f} s"
        )
        if self.remeasured_error is not None:
            lines.append(
                f"measured again: the cached table was {100 * self.remeasured_error:.1f}% off "
                "the whole model"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def plot(self, path, highlight=5, limit=30):
        """A bar chart of the most expensive blocks (latency, or bytes for `mcu`) as a PNG."""
        from keras_prune.reporting import plots

        timed = self.target != "mcu"
        values = [(row.latency_us if timed else row.bytes) or 0.0 for row in self.blocks]
        return plots.bar_chart(
            [row.name for row in self.blocks],
            values,
            path,
            title=f"Bottlenecks on {self.target}"
            + (f" ({self.threads} thread(s))" if timed else ""),
            xlabel="latency (us)" if timed else "bytes",
            highlight=highlight,
            limit=limit,
        )

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values["blocks"] = [BlockCost(**row) for row in values["blocks"]]
        return cls(**values)


def activation_itemsize(target):
    """Bytes per activation element on `target` (int8 targets: 1)."""
    return 1 if target in ("mcu", "mobile-int8") else 4


_CHANNEL_MAPS = {}


def _channels_of(model):
    found = _CHANNEL_MAPS.get(id(model))
    if found is None or found[0] is not model:
        found = (model, _Channels(model))
        _CHANNEL_MAPS.clear()
        _CHANNEL_MAPS[id(model)] = found
    return found[1]


def peak_activation_bytes(model, kept=None, itemsize=4, channels=None):
    """The largest total size of activations alive at once (batch 1), walking the graph in
    order: a lower bound of the memory planner's arena, used to predict how the TFLM arena
    changes when channels are removed.

    Example:

    ```python
    peak_activation_bytes(model, itemsize=1)  # int8
    ```
    """
    channels = channels or _channels_of(model)
    graph = tracing.trace(model)
    last_use = {}
    for index, call in enumerate(graph.calls):
        for tensor in call.inputs:
            last_use[id(tensor)] = index
    for tensor in graph.outputs:
        last_use[id(tensor)] = len(graph.calls)

    def size(tensor):
        return blocks_lib.elements_of(tensor) * channels.ratio(tensor, kept) * itemsize

    live = {id(t): size(t) for t in graph.inputs}
    peak = sum(live.values())
    for index, call in enumerate(graph.calls):
        for tensor in call.outputs:
            live[id(tensor)] = size(tensor)
        peak = max(peak, sum(live.values()))
        for key in [k for k in live if last_use.get(k, -1) <= index]:
            del live[key]
    return int(peak)
