"""The quantities a search can optimize or bound: names, directions and units.

Costs of the deployed file (`latency` in microseconds on LiteRT, `size` in file bytes, `arena`
in TFLM arena bytes) and of the Keras model (`macs`, `params`) are minimized; metrics of the
compiled model (`accuracy`, `loss`, or any compiled metric's name) are maximized, except those
whose name says they are a loss or an error.
"""

import dataclasses

COSTS = {
    "latency": "us",
    "size": "bytes",
    "arena": "bytes",
    "macs": "",
    "params": "",
}
_LOWER_IS_BETTER_WORDS = ("loss", "error", "crossentropy", "mse", "mae")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One named quantity and whether larger is better.

    Attributes:
        name: "accuracy", "loss", "latency", "size", "arena", "macs", "params", or the name of
            a compiled metric.
        maximize: True for accuracy-like metrics.
        unit: "us", "bytes" or "" (counts, metrics).
    """

    name: str
    maximize: bool
    unit: str = ""

    @property
    def is_cost(self):
        return self.name in COSTS

    @property
    def direction(self):
        return "maximize" if self.maximize else "minimize"

    def format(self, value):
        return format_value(value, self.unit)

    def better(self, a, b):
        """Whether `a` is better than `b`."""
        return a > b if self.maximize else a < b


def get(name):
    """The `Objective` called `name` (a cost, or a metric whose direction follows its name).

    Example:

    ```python
    get("latency").maximize  # False
    ```
    """
    if isinstance(name, Objective):
        return name
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Expected an objective name: one of "
            f"{sorted(COSTS) + ['accuracy', 'loss']} or a compiled metric's name. "
            f"Received: {name!r}"
        )
    if name in COSTS:
        return Objective(name, False, COSTS[name])
    lower = any(word in name for word in _LOWER_IS_BETTER_WORDS)
    return Objective(name, not lower)


def format_value(value, unit):
    """`1234.5, "us"` -> "1.23 ms"; `65536, "bytes"` -> "64.0 KB"; counts get K/M/G."""
    if value is None:
        return "-"
    if unit == "us":
        if abs(value) >= 1e6:
            return f"{value / 1e6:.3g} s"
        if abs(value) >= 1e3:
            return f"{value / 1e3:.3g} ms"
        return f"{value:.3g} us"
    if unit == "bytes":
        for suffix, scale in (("MB", 1024**2), ("KB", 1024)):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {suffix}"
        return f"{value:.0f} B"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return str(int(value))
    return f"{value:.4g}"
