"""`SearchResult`: the trials of a search, its Pareto front, a table, a plot, and the pruned
model of any point."""

import dataclasses

from keras_prune.auto import objectives as objectives_lib
from keras_prune.reporting import text_tables


@dataclasses.dataclass
class Candidate:
    """One evaluated choice of sparsities.

    Attributes:
        number: the Optuna trial number.
        sparsities: `{variable: sparsity}` (channel group `index:first layer`, or layer name).
        values: `{objective name: value}` as the search saw them (costs predicted from the
            latency table; metrics measured after the fine-tune).
        costs: every cost of the choice (`macs`, `params`, `latency`, `size`, `arena`).
        metrics: every compiled metric after the fine-tune.
        violations: one per constraint, <= 0 where met.
        measured: after `remeasure`: `{"latency", "size", "arena"}` of the exported file, end
            to end.

    Example:

    ```python
    # docs: slow (an Optuna study)
    result = kp.auto.search(model, (x, y), objectives=["accuracy", "macs"], n_trials=6)
    point = result.best()
    point.value("macs"), point.mean_sparsity
    small = point.materialize()
    ```
    """

    number: int
    sparsities: dict
    values: dict
    costs: dict
    metrics: dict
    violations: list
    measured: dict = dataclasses.field(default_factory=dict)
    result: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def feasible(self):
        return all(v <= 0 for v in self.violations)

    @property
    def mean_sparsity(self):
        return sum(self.sparsities.values()) / max(len(self.sparsities), 1)

    def value(self, name):
        """An objective's value: measured end to end when available, else as searched."""
        if name in self.measured and self.measured[name] is not None:
            return self.measured[name]
        if name in self.values:
            return self.values[name]
        if name in self.costs:
            return self.costs[name]
        return self.metrics.get(name)

    def materialize(self):
        """The pruned (channel: shrunk) model of this point; fine-tune it before use."""
        return self.result.materialize(self)


def dominates(a, b, objectives):
    """Whether value dict `a` is at least as good as `b` everywhere and better somewhere."""
    better = False
    for objective in objectives:
        x, y = a[objective.name], b[objective.name]
        if objective.better(y, x):
            return False
        if objective.better(x, y):
            better = True
    return better


def pareto_front(candidates, objectives):
    """The candidates no other candidate dominates (ties on every objective: the first)."""
    front = []
    for candidate in candidates:
        if any(dominates(o.values, candidate.values, objectives) for o in candidates):
            continue
        if any(o.values == candidate.values for o in front):
            continue
        front.append(candidate)
    return front


class SearchResult:
    """The outcome of `kp.auto.search`.

    Attributes:
        objectives: the `Objective`s; `constraints`: the `Constraint`s.
        candidates: every finished trial, as `Candidate`s.
        front: the Pareto-optimal feasible candidates (sorted by the first objective).
        baseline: the unpruned model's values (`{objective: value}`).
        study: the Optuna study; `storage`: where it is kept.
        space: the `SearchSpace` (variables, costs, materialization).

    Example:

    ```python
    # docs: slow (an Optuna study)
    result = kp.auto.search(model, (x, y), objectives=["accuracy", "macs"], n_trials=6)
    for point in result.front:
        print(point.number, point.values, point.sparsities)
    small = result.materialize(result.front[0])
    ```
    """

    def __init__(self, model, space, objectives, constraints, candidates, baseline, study,
                 storage, weights=None, notes=()):  # fmt: skip
        self.model, self.space = model, space
        self.objectives, self.constraints = list(objectives), list(constraints)
        self.baseline, self.study, self.storage = baseline, study, storage
        self.weights = dict(weights or {})
        self.notes = list(notes)
        self.candidates = list(candidates)
        for candidate in self.candidates:
            candidate.result = self
        self.refresh_front()

    def refresh_front(self):
        feasible = [c for c in self.candidates if c.feasible]
        front = pareto_front(feasible, self.objectives)
        first = self.objectives[0]
        self.front = sorted(
            front, key=lambda c: c.values[first.name] * (-1 if first.maximize else 1)
        )

    @property
    def feasible(self):
        return [c for c in self.candidates if c.feasible]

    def closest(self):
        """The candidate nearest to meeting every constraint (smallest relative violation)."""
        return min(self.candidates, key=lambda c: sum(max(v, 0) for v in c.violations))

    def best(self, weights=None):
        """The front's point with the highest weighted score: each objective scaled to [0, 1]
        over the front (1 = best), times its weight (default: `weights` of the search, else
        1 each).

        Raises:
            ValueError: no candidate met the constraints (the message names the closest).
        """
        if not self.front:
            raise ValueError(self.infeasible_message())
        weights = dict(self.weights if weights is None else weights)
        unknown = set(weights) - {o.name for o in self.objectives}
        if unknown:
            raise ValueError(
                f"Expected `weights` keys among the objectives {[o.name for o in self.objectives]}"
                f". Received: {sorted(unknown)}"
            )

        def score(candidate):
            total = 0.0
            for objective in self.objectives:
                values = [c.values[objective.name] for c in self.front]
                low, high = min(values), max(values)
                value = candidate.values[objective.name]
                scaled = 1.0 if high == low else (value - low) / (high - low)
                if not objective.maximize:
                    scaled = 1.0 - scaled
                total += weights.get(objective.name, 1.0) * scaled
            return total

        return max(self.front, key=score)

    def infeasible_message(self):
        if not self.candidates:
            return "The search has no finished trial yet."
        closest = self.closest()
        parts = []
        for constraint, violation in zip(self.constraints, closest.violations, strict=True):
            if violation > 0:
                measured = closest.value(constraint.name)
                parts.append(f"{constraint.text!r} (closest: {constraint.format(measured)})")
        return (
            "No trial met the constraints: "
            + "; ".join(parts)
            + f". The closest was trial {closest.number}. Relax the constraint to the closest "
            "value, allow more sparsity (`max_sparsity`), or run more trials."
        )

    def materialize(self, candidate):
        """The pruned model of `candidate` (a `Candidate`, a trial number or an index into
        `front`): shrunk for channel searches, wrapped and masked for unstructured ones."""
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            by_number = {c.number: c for c in self.candidates}
            if candidate in by_number:
                candidate = by_number[candidate]
            elif 0 <= candidate < len(self.front):
                candidate = self.front[candidate]
            else:
                raise ValueError(
                    f"Expected a trial number {sorted(by_number)} or a front index. "
                    f"Received: {candidate}"
                )
        return self.space.materialize(self.model, candidate.sparsities)

    # -- reports -----------------------------------------------------------------------------

    def table(self, rows=None, width=130):
        """The front (or `rows`) as a text table, end-to-end measurements beside predictions."""
        from rich.table import Table

        rows = self.front if rows is None else rows
        measured = sorted({key for c in rows for key in c.measured})
        table = Table(title=f"Pareto front: {len(rows)} of {len(self.candidates)} trials")
        table.add_column("trial", justify="right")
        for objective in self.objectives:
            arrow = "max" if objective.maximize else "min"
            table.add_column(f"{objective.name} ({arrow})", justify="right")
        for key in measured:
            table.add_column(f"{key} measured", justify="right")
        table.add_column("MACs", justify="right")
        table.add_column("mean sparsity", justify="right")
        if self.baseline:
            table.add_row(
                "unpruned",
                *(
                    objective.format(self.baseline.get(objective.name))
                    for objective in self.objectives
                ),
                *("" for _ in measured),
                objectives_lib.format_value(self.baseline.get("macs"), ""),
                "0",
            )
        for candidate in rows:
            table.add_row(
                str(candidate.number),
                *(
                    objective.format(candidate.values[objective.name])
                    for objective in self.objectives
                ),
                *(objectives_lib.get(key).format(candidate.measured.get(key)) for key in measured),
                objectives_lib.format_value(candidate.costs.get("macs"), ""),
                f"{candidate.mean_sparsity:.2f}",
            )
        lines = [text_tables.as_text(table, width).rstrip()]
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def plot(self, path, x=None, y=None, marked=()):
        """All trials on two objectives, the front highlighted, the unpruned model as a star.

        Args:
            path: the PNG to write.
            x: the objective on the x axis, by name (default: the first cost, or the first
                objective).
            y: the objective on the y axis, by name (default: the first metric, or the first
                other objective).
            marked: extra `[(x, y, label)]` reference points (e.g. uniform pruning).
        """
        from keras_prune.reporting import plots

        names = [o.name for o in self.objectives]
        costs = [n for n in names if objectives_lib.get(n).is_cost]
        metrics = [n for n in names if not objectives_lib.get(n).is_cost]
        x = x or (costs[0] if costs else names[0])
        y = y or (metrics[0] if metrics else next(n for n in names if n != x))
        points = [(c.value(x), c.value(y)) for c in self.candidates]
        position = {id(c): i for i, c in enumerate(self.candidates)}
        front = [position[id(c)] for c in self.front]
        reference = list(marked)
        if self.baseline.get(x) is not None and self.baseline.get(y) is not None:
            reference.append((self.baseline[x], self.baseline[y], "unpruned"))
        x_unit, y_unit = objectives_lib.get(x).unit, objectives_lib.get(y).unit
        return plots.scatter_front(
            points,
            front,
            path,
            title=f"Search: {len(self.candidates)} trials, front of {len(front)}",
            xlabel=f"{x} ({x_unit})" if x_unit else x,
            ylabel=f"{y} ({y_unit})" if y_unit else y,
            marked=reference,
        )
