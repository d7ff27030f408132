"""The first trials of a search: where the sampler starts.

`kp.auto.search(initial=...)` queues these before the sampler draws its own (only when the
study is empty, so a resumed study is not seeded twice):

- "uniform": every variable at 25%, then at 50% (the same sparsity everywhere).
- "sensitivity": the uniform points, plus for each of them a point as cheap (by the search's
  first cost objective, e.g. latency predicted from the `kp.auto.profile` table) that spends
  the budget where it hurts least. A one-shot sensitivity scan (`kp.auto.sensitivity`,
  channel groups, the compiled loss on the validation sample, at the search's grid values)
  gives each variable's loss increase per step; the greedy path starts unpruned and takes, one
  grid step at a time, the step with the largest cost saved per unit of loss increase, until
  the cost is at most the uniform point's (the knapsack heuristic of NetAdapt / AMC-style
  budgeted pruning, with a measured table as the cost).
- a list of `{variable name: sparsity}` dicts: the user's own points (missing variables 0).

The greedy math (`drop_at`, `greedy_sparsities`) is pure: curves and a cost function in,
sparsities out.
"""

import numpy as np

from keras_prune.auto.sensitivity_allocation import monotone_curve

INITIAL = ("uniform", "sensitivity")
UNIFORM = (0.25, 0.5)
# Below this loss increase a step is "free": free steps are ranked by the cost they save.
_FREE = 1e-9
_WORST = 1e12


def drop_at(grid, drops, sparsity):
    """The loss increase of a curve at `sparsity`: the curve through (0, 0) made monotone (a
    running maximum, never below 0), linear between grid points, flat beyond the last.

    Args:
        grid: increasing sparsities the drops were measured at.
        drops: the loss increase at each (positive = worse).
        sparsity: where to read it.

    Example:

    ```python
    drop_at([0.5, 1.0], [0.2, 0.1], 0.75)  # 0.2: the dip is ignored
    ```
    """
    # A metric that diverged (NaN, inf) counts as the worst: finite, so that the greedy path
    # can still divide by it, and larger than any real increase.
    xs, ys = monotone_curve(grid, drops, worst=_WORST)
    return float(np.interp(sparsity, xs, ys))


def greedy_sparsities(curves, values, cost, budgets):
    """Points of equal or lower `cost` than each budget, each pruned where the cost saved per
    unit of loss increase is largest.

    One greedy path: from every variable at 0, repeatedly move the one variable whose next
    grid value saves the most cost per unit of loss increase (steps that cost no loss first,
    by the cost they save); the first point of the path at or below a budget is that budget's
    point. Steps that save no cost are never taken.

    Args:
        curves: `{variable name: (grid, drops)}`: loss increase when that variable alone is
            pruned to each grid sparsity (`kp.auto.sensitivity(...).units`).
        values: the values every variable may take, increasing from 0 (the search's grid).
        cost: a function `{variable name: sparsity} -> float` (lower is cheaper), e.g. the
            latency the table predicts.
        budgets: costs to reach.

    Returns:
        One `{variable name: sparsity}` per budget, in the order given; a budget no point
        reaches gets the path's last (cheapest) point.

    Example:

    ```python
    curves = {"a": ([0.5], [0.01]), "b": ([0.5], [1.0])}
    cost = lambda s: 10 - 8 * s["a"] - 8 * s["b"]  # both save the same
    greedy_sparsities(curves, [0.0, 0.5], cost, [7.0])  # [{"a": 0.5, "b": 0.0}]
    ```
    """
    values = [float(v) for v in values]
    names = list(curves)
    level = dict.fromkeys(names, 0)
    point = dict.fromkeys(names, values[0])
    current = float(cost(point))
    found = [None] * len(budgets)

    def record(value):
        for index, budget in enumerate(budgets):
            if found[index] is None and value <= budget:
                found[index] = dict(point)

    record(current)
    while any(result is None for result in found):
        best = None
        for name in names:
            if level[name] + 1 >= len(values):
                continue
            step = dict(point, **{name: values[level[name] + 1]})
            saved = current - float(cost(step))
            if saved <= 0:
                continue
            grid, drops = curves[name]
            increase = drop_at(grid, drops, step[name]) - drop_at(grid, drops, point[name])
            score = saved / max(increase, _FREE)
            if best is None or score > best[0]:
                best = (score, name, current - saved)
        if best is None:
            break
        _, name, current = best
        level[name] += 1
        point[name] = values[level[name]]
        record(current)
    return [dict(point) if result is None else result for result in found]


def check_initial(initial):
    """`initial` checked for its form: "uniform", "sensitivity" or a list of dicts (copied)."""
    if isinstance(initial, str):
        if initial not in INITIAL:
            raise ValueError(
                f"Expected `initial` to be one of {list(INITIAL)} or a list of "
                f"{{variable name: sparsity}} dicts. Received: initial={initial!r}"
            )
        return initial
    if isinstance(initial, dict):
        initial = [initial]
    if not isinstance(initial, (list, tuple)) or not all(isinstance(p, dict) for p in initial):
        raise ValueError(
            f"Expected `initial` to be one of {list(INITIAL)} or a list of "
            f"{{variable name: sparsity}} dicts (names from `result.space.names`). "
            f"Received: initial={initial!r}"
        )
    return [dict(point) for point in initial]


def check_points(points, names, values):
    """The user's points with every variable filled in (0 where missing); unknown names and
    values off the grid raise a ValueError naming the valid choices."""
    known = set(names)
    checked = []
    for index, point in enumerate(points):
        for name, value in point.items():
            if name not in known:
                shown = ", ".join(repr(n) for n in list(names)[:8])
                raise ValueError(
                    f"Expected the variables of `initial[{index}]` to be the search's "
                    f"(`result.space.names`: {shown}{', ...' if len(names) > 8 else ''}). "
                    f"Received: {name!r}"
                )
            if not isinstance(value, (int, float)) or not any(
                abs(float(value) - v) < 1e-6 for v in values
            ):
                raise ValueError(
                    f"Expected `initial[{index}][{name!r}]` to be one of the search's values "
                    f"{list(values)} (set by `step` and `max_sparsity`). Received: {value!r}"
                )
        checked.append({n: _snap(point.get(n, 0.0), values) for n in names})
    return checked


def _snap(value, values):
    return min(values, key=lambda v: abs(v - float(value)))


def starting_points(initial, space, cost_name, scan=None, meets=None, fill=0, seed=None):
    """The points `kp.auto.search` queues first (duplicates removed, in order).

    Args:
        initial: checked by `check_initial`.
        space: the search's `SearchSpace`.
        cost_name: the cost the greedy points are budgeted in ("latency", "macs", ...).
        scan: a channel `Sensitivity` of the search's groups (needed for "sensitivity").
        meets: None, or `point -> bool`: whether a point meets the search's cost budgets
            (constraints known before any training). Then the uniform points are moved into
            the budgets (see `into_budget`), and random points in the budgets are added up
            to `fill` points in all, so that the sampler's first generation is spent on
            candidates that are fine-tuned, not on ones the budget rejects. The user's own
            points are queued as given.
        fill: how many points to queue at least when `meets` is given (the sampler's first
            generation).
        seed: seeds the random points.

    Example:

    ```python
    starting_points("uniform", space, "latency")  # uniform 25% and 50%
    ```
    """
    values = space.values()
    if not isinstance(initial, str):
        points = check_points(initial, space.names, values)
    else:
        points = [space.uniform(s) for s in UNIFORM if s <= space.max_sparsity + 1e-9]
        if meets is not None:
            points = [into_budget(point, values, meets) for point in points]
        if initial == "sensitivity" and len(values) > 1:
            curves = scan_curves(scan, space)
            budgets = [space.costs(point)[cost_name] for point in points]
            points += greedy_sparsities(
                curves, values, lambda point: space.costs(point)[cost_name], budgets
            )
    unique, seen = [], set()

    def add(point):
        key = tuple(sorted(point.items()))
        if key not in seen:
            seen.add(key)
            unique.append(point)

    for point in points:
        add(point)
    if meets is not None and isinstance(initial, str):
        rng = np.random.default_rng(seed)
        # Draws may land on a point already queued: try a bounded number of times.
        for _ in range(4 * max(fill, 0)):
            if len(unique) >= fill:
                break
            drawn = {name: float(rng.choice(values)) for name in space.names}
            add(into_budget(drawn, values, meets))
    return unique


def meets_budgets(budgets, space):
    """`point -> bool`: whether a point's predicted costs meet every cost constraint in
    `budgets` (parsed `kp.auto` constraints on costs the `space` predicts)."""

    def meets(point):
        costs = space.costs(point)
        return all(c.met(costs[c.name]) for c in budgets)

    return meets


def into_budget(point, values, meets):
    """`point` pruned further until `meets(point)`: every variable raised by the same number of
    grid steps (each capped at the largest value), the fewest that meet the budgets. A uniform
    point stays uniform; a random one keeps its shape. Returns `point` itself if it meets them,
    and every variable at the largest value if nothing less does.

    Example:

    ```python
    into_budget({"a": 0.25, "b": 0.0}, [0, 0.25, 0.5], lambda p: sum(p.values()) >= 0.5)
    # {"a": 0.5, "b": 0.25}
    ```
    """
    positions = {name: values.index(_snap(value, values)) for name, value in point.items()}
    top = len(values) - 1
    for steps in range(top + 1):
        moved = {name: values[min(index + steps, top)] for name, index in positions.items()}
        if meets(moved):
            return moved
    return {name: values[top] for name in point}


def scan_curves(scan, space):
    """`{variable name: (grid, drops)}` from a channel sensitivity scan, matched to the
    search's variables by channel group index (variables the scan lacks: a flat curve)."""
    by_index = {}
    for unit in scan.units:
        head = unit["name"].split(":", 1)[0]  # "group 7: conv1, ..."
        by_index[int(head.split()[-1])] = list(unit["drops"])
    grid = list(scan.sparsities)
    return {v.name: (grid, by_index.get(v.index, [0.0] * len(grid))) for v in space.variables}
