"""kp.auto.search(initial=...): the greedy math on hand-made curves and costs, the checks of
user points, and the sensitivity starting points of a digits search (queued once, not again
when the study resumes)."""

import math

import pytest
from conftest import small_cnn

from keras_prune import auto
from keras_prune.auto import starting_points as sp
from keras_prune.auto.space import SearchSpace

optuna = pytest.importorskip("optuna")


def test_drop_at_reads_the_monotone_curve():
    grid, drops = [0.25, 0.5, 0.75], [0.1, 0.05, 0.4]
    assert sp.drop_at(grid, drops, 0.0) == 0.0
    assert sp.drop_at(grid, drops, 0.125) == pytest.approx(0.05)  # linear from (0, 0)
    assert sp.drop_at(grid, drops, 0.5) == pytest.approx(0.1)  # the dip is ignored
    assert sp.drop_at(grid, drops, 0.625) == pytest.approx(0.25)
    assert sp.drop_at(grid, drops, 0.9) == pytest.approx(0.4)  # flat beyond the grid
    assert sp.drop_at([0.5], [-0.2], 0.5) == 0.0  # an improvement counts as no increase
    assert sp.drop_at([0.5, 1.0], [math.nan, 0.1], 0.5) > 1e6  # diverged: the worst


def additive(savings, full=100.0):
    """A cost that falls by `savings[name] * sparsity` for each variable."""
    return lambda point: full - sum(savings.get(name, 0.0) * value for name, value in point.items())


def test_greedy_prunes_where_cost_saved_per_loss_is_largest():
    values = [0.0, 0.25, 0.5, 0.75]
    curves = {
        "cheap_to_prune": (values[1:], [0.02, 0.04, 0.06]),
        "sensitive": (values[1:], [1.0, 2.0, 3.0]),
        "slow": (values[1:], [0.1, 0.2, 0.3]),
    }
    cost = additive({"cheap_to_prune": 8.0, "sensitive": 40.0, "slow": 80.0})
    # Per unit of loss, a step of "slow" saves 20 / 0.1 = 200, of "cheap_to_prune" 2 / 0.02 =
    # 100, of "sensitive" 10 / 1 = 10: "slow" goes first, as far as it can.
    [point] = sp.greedy_sparsities(curves, values, cost, [100.0 - 60.0])
    assert point == {"cheap_to_prune": 0.0, "sensitive": 0.0, "slow": 0.75}
    assert cost(point) <= 40.0
    # A tighter budget has to take "sensitive" last, and stops as soon as it is met.
    tight, loose = sp.greedy_sparsities(curves, values, cost, [40.0, 90.0])
    assert loose == {"cheap_to_prune": 0.0, "sensitive": 0.0, "slow": 0.25}
    assert tight["slow"] == 0.75
    unreachable = sp.greedy_sparsities(curves, values, cost, [-1.0])[0]
    assert unreachable == dict.fromkeys(curves, 0.75)  # the cheapest point of the path


def test_greedy_takes_free_steps_first_and_never_steps_that_save_nothing():
    values = [0.0, 0.5, 1.0]
    curves = {"free": ([0.5, 1.0], [0.0, 0.0]), "costly": ([0.5, 1.0], [0.5, 1.0])}
    cost = additive({"free": 2.0, "costly": 10.0})
    [point] = sp.greedy_sparsities(curves, values, cost, [99.0])
    assert point == {"free": 0.5, "costly": 0.0}  # saves only 1, but costs no loss
    curves["useless"] = ([0.5, 1.0], [0.0, 0.0])
    [point] = sp.greedy_sparsities(curves, values, cost, [-5.0])
    assert point["useless"] == 0.0  # no cost saved: never pruned


def test_initial_is_checked_where_it_enters():
    assert sp.check_initial("uniform") == "uniform"
    assert sp.check_initial({"a": 0.5}) == [{"a": 0.5}]
    with pytest.raises(ValueError, match=r"\['uniform', 'sensitivity'\].*initial='greedy'"):
        sp.check_initial("greedy")
    with pytest.raises(ValueError, match=r"initial=0\.5"):
        sp.check_initial(0.5)
    values = [0.0, 0.25, 0.5]
    assert sp.check_points([{"b": 0.25}], ["a", "b"], values) == [{"a": 0.0, "b": 0.25}]
    with pytest.raises(ValueError, match=r"'a', 'b'.*Received: 'c'"):
        sp.check_points([{"c": 0.25}], ["a", "b"], values)
    with pytest.raises(ValueError, match=r"initial\[0\]\['a'\].*\[0\.0, 0\.25, 0\.5\].*0\.3"):
        sp.check_points([{"a": 0.3}], ["a", "b"], values)


def _trials(result):
    return {c.number: c for c in result.candidates}


def test_sensitivity_starting_points_meet_the_uniform_budgets(trained, digits, tmp_path):
    _, validation = digits
    arguments = dict(
        objectives=["accuracy", "macs"],
        initial="sensitivity",
        samples=200,
        storage=tmp_path / "study.journal",
        study_name="seeded",
        cache_dir=tmp_path / "cache",
        verbose=0,
    )
    result = auto.search(trained, validation, n_trials=4, **arguments)
    trials = _trials(result)
    names = result.space.names
    assert trials[0].sparsities == dict.fromkeys(names, 0.25)
    assert trials[1].sparsities == dict.fromkeys(names, 0.5)
    for seed, uniform in ((2, 0), (3, 1)):  # one greedy point per uniform point, as cheap
        assert trials[seed].costs["macs"] <= trials[uniform].costs["macs"]
        assert trials[seed].sparsities != trials[uniform].sparsities
        assert set(trials[seed].sparsities.values()) <= set(result.space.values())
    assert list((tmp_path / "cache" / "sensitivity").iterdir())  # the scan is cached
    resumed = auto.search(trained, validation, n_trials=5, **arguments)
    assert len(resumed.candidates) == 5
    assert {n: c.sparsities for n, c in _trials(resumed).items() if n < 4} == {
        n: c.sparsities for n, c in trials.items()
    }


def test_user_points_are_queued_and_bad_ones_refused(trained, digits, tmp_path):
    _, validation = digits
    common = dict(objectives=["accuracy", "macs"], samples=100, verbose=0)
    mine = {"1:conv2": 0.5}
    result = auto.search(
        trained, validation, n_trials=1, initial=[mine], storage=tmp_path / "a.journal", **common
    )
    assert result.candidates[0].sparsities == {"0:conv1": 0.0, "1:conv2": 0.5, "2:dense1": 0.0}
    with pytest.raises(ValueError, match=r"'0:conv1'.*Received: 'conv2'"):
        auto.search(trained, validation, initial=[{"conv2": 0.5}], **common)
    with pytest.raises(ValueError, match=r"initial\[0\]\['1:conv2'\].*0\.125.*Received: 0\.4"):
        auto.search(trained, validation, initial=[{"1:conv2": 0.4}], **common)
    with pytest.raises(ValueError, match="granularity='channel'"):
        auto.search(
            trained, validation, granularity="unstructured", initial="sensitivity", **common
        )


def test_into_budget_prunes_every_variable_the_same_number_of_steps():
    values = [0.0, 0.25, 0.5, 0.75]
    cost = additive({"a": 40.0, "b": 40.0})
    meets = lambda point: cost(point) <= 60.0  # noqa: E731
    assert sp.into_budget({"a": 0.5, "b": 0.5}, values, meets) == {"a": 0.5, "b": 0.5}
    # Two steps each (one is not enough): the shape of the point is kept.
    assert sp.into_budget({"a": 0.25, "b": 0.0}, values, meets) == {"a": 0.75, "b": 0.5}
    assert sp.into_budget({"a": 0.5, "b": 0.0}, values, meets) == {"a": 0.75, "b": 0.25}
    never = lambda point: False  # noqa: E731
    assert sp.into_budget({"a": 0.0, "b": 0.25}, values, never) == {"a": 0.75, "b": 0.75}


def test_with_a_budget_every_starting_point_meets_it_and_fills_the_first_generation():
    space = SearchSpace(small_cnn(), "channel", None, 0.75, 0.125, None, "mobile")
    limit = space.costs(space.uniform(0.5))["macs"]
    meets = lambda point: space.costs(point)["macs"] <= limit  # noqa: E731
    points = sp.starting_points("uniform", space, "macs", meets=meets, fill=6, seed=0)
    # Uniform 25% is over the budget: moved to the least pruned uniform point within it.
    assert points[0] == space.uniform(0.5)
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    values = space.values()
    for point in points:
        assert meets(point)
        # The fewest steps: one step less pruned everywhere would break the budget.
        if all(value > 0 for value in point.values()):
            less = {name: values[values.index(value) - 1] for name, value in point.items()}
            assert not meets(less)
    # The same seed gives the same points; without a budget nothing is added.
    assert sp.starting_points("uniform", space, "macs", meets=meets, fill=6, seed=0) == points
    assert sp.starting_points("uniform", space, "macs", fill=6) == [
        space.uniform(0.25),
        space.uniform(0.5),
    ]
