"""Deployment budgets written as text: "latency <= 20 ms", "arena <= 64 KB", "accuracy >= 0.9".

A constraint names an objective (see `keras_prune.auto.objectives`), a comparison (`<=`, `<`,
`>=`, `>`) and a value with an optional unit: `us`, `ms`, `s` for latency; `B`, `KB`, `MB`
(binary: 1 KB = 1024 bytes, as MCU memory is quoted) for size and arena; `K`, `M`, `G`
(decimal) for MACs and parameter counts.
"""

import dataclasses
import re

from keras_prune.auto import objectives as objectives_lib

_UNITS = {
    "us": 1.0,
    "µs": 1.0,
    "ms": 1e3,
    "s": 1e6,
    "b": 1,
    "bytes": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "%": 0.01,
}
_UNIT_KIND = {
    "us": "us",
    "µs": "us",
    "ms": "us",
    "s": "us",
    "b": "bytes",
    "bytes": "bytes",
    "kb": "bytes",
    "kib": "bytes",
    "mb": "bytes",
    "mib": "bytes",
    "k": "",
    "m": "",
    "g": "",
    "%": "",
}
_PATTERN = re.compile(
    r"^\s*(?P<name>[A-Za-z_][\w]*)\s*(?P<op><=|>=|<|>)\s*(?P<value>[-+]?\d+(\.\d*)?([eE][-+]?\d+)?)"
    r"\s*(?P<unit>[A-Za-zµ%]*)\s*$"
)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """`objective op value`, the value in base units (microseconds, bytes, counts).

    Example:

    ```python
    from keras_prune.auto.constraints import parse

    parse("latency <= 20 ms")  # Constraint(name='latency', op='<=', value=20000.0, ...)
    ```
    """

    name: str
    op: str
    value: float
    text: str

    @property
    def objective(self):
        return objectives_lib.get(self.name)

    def violation(self, measured):
        """How far `measured` is outside the bound (<= 0: met), in base units."""
        if self.op in ("<=", "<"):
            return measured - self.value
        return self.value - measured

    def met(self, measured):
        if self.op == "<=":
            return measured <= self.value
        if self.op == "<":
            return measured < self.value
        if self.op == ">=":
            return measured >= self.value
        return measured > self.value

    def format(self, value):
        return self.objective.format(value)


def parse(text):
    """A `Constraint` from text such as "latency <= 20 ms" (or a `Constraint`, returned)."""
    if isinstance(text, Constraint):
        return text
    if not isinstance(text, str):
        raise ValueError(
            'Expected a constraint as text, e.g. "latency <= 20 ms" or "arena <= 64 KB". '
            f"Received: {text!r}"
        )
    found = _PATTERN.match(text)
    if found is None:
        raise ValueError(
            f'Could not read the constraint {text!r}. Expected "<objective> <= | >= <number> '
            '[unit]", e.g. "latency <= 20 ms", "size <= 1 MB", "accuracy >= 0.9".'
        )
    name, op, unit = found["name"], found["op"], found["unit"]
    objective = objectives_lib.get(name)
    value = float(found["value"])
    if unit:
        key = unit.lower() if unit != "µs" else unit
        if key not in _UNITS:
            raise ValueError(
                f"Unknown unit {unit!r} in constraint {text!r}. Expected one of us, ms, s "
                "(latency), B, KB, MB (bytes), K, M, G (counts)."
            )
        kind = _UNIT_KIND[key]
        if kind and kind != objective.unit:
            raise ValueError(
                f"The unit {unit!r} in constraint {text!r} does not fit {name!r} (measured in "
                f"{objective.unit or 'plain numbers'})."
            )
        value *= _UNITS[key]
    return Constraint(name, op, value, text.strip())
