"""The lower-memory global ranking (scores computed again in each radix pass, one tensor after
the other) gives exactly the masks of ranking the concatenated scores: ties, signed values,
several parts, forced entries, in a traced function and eagerly.

TensorFlow only (the radix path; JAX sorts): tests/test_compiled_masks.py checks the global
ranking of a pruned model on JAX, compiled against eager."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp
from keras_prune.core import masks

to_numpy = keras.ops.convert_to_numpy

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="radix selection runs on TensorFlow"
)


def order_reference(scores, k):
    """Keep the k largest by the float's total order (-0.0 < +0.0), earlier tensors and
    positions first: the mask of the concatenation, cut back into the tensors."""
    flat = np.concatenate([tensor.ravel() for tensor in scores]).astype("float32")
    bits = flat.view("int32").astype("int64")
    keys = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    keep = np.zeros(flat.size, "uint8")
    keep[np.argsort(-keys, kind="stable")[:k]] = 1
    return np.split(keep, np.cumsum([tensor.size for tensor in scores])[:-1])


def signed_parts(sizes, seed):
    """Score tensors with ties inside and across tensors, -0.0, +0.0 and infinities."""
    rng = np.random.default_rng(seed)
    parts = []
    for size in sizes:
        values = np.round(rng.standard_normal(size), 1).astype("float32")
        values[::7] = 0.0
        values[3::11] = -0.0
        values[5::97] = np.inf
        values[6::101] = -np.inf
        parts.append(values.reshape(-1, 1) if size % 2 else values)
    return parts


def reader(variable):
    """A rescore function reading `variable`, after `after` (as the mask engine orders it)."""

    def read(after):
        with tf.control_dependencies([] if after is None else [after]):
            return variable.value

    return read


def ranking(scores, forced=None, traced=False, rescore=True, nonnegative=False, exact=True):
    """`k -> (masks, counts)` of `top_k_masks_together`, with the scores read from variables
    (rescored in each pass) or given as tensors, eagerly or in a `tf.function` (traced once);
    `exact=False` asks for lower bounds of the counts."""
    variables = [keras.Variable(tensor) for tensor in scores]

    def run(k):
        functions = [reader(v) for v in variables] if rescore else None
        values = [v.value for v in variables]
        return masks.top_k_masks_and_counts(
            values,
            k,
            forced,
            dtype="uint8",
            nonnegative=nonnegative,
            rescore=functions,
            exact_counts=exact,
        )

    compiled = tf.function(run, autograph=False) if traced else run

    def ranked(k):
        found, counts = compiled(tf.constant(k, "int32"))
        return [to_numpy(mask).ravel() for mask in found], [int(to_numpy(c)) for c in counts]

    return ranked


# Three 11/11/10-bit passes below 2**19 scores in all, two 16-bit passes from there.
@pytest.mark.parametrize(
    "sizes",
    [(30_001, 3, 20_000, 9), pytest.param((300_001, 5, 250_000), marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("traced", [False, True])
def test_rescored_ranking_equals_the_concatenation_on_signed_ties(sizes, traced):
    scores = signed_parts(sizes, seed=len(sizes))
    total = sum(sizes)
    rankings = [ranking(scores, traced=traced, rescore=rescore) for rescore in (False, True)]
    for k in (1, total // 3, total // 2, total - 1, total):
        expected = order_reference(scores, k)
        for ranked in rankings:
            found, counts = ranked(k)
            for want, got, count in zip(expected, found, counts, strict=True):
                np.testing.assert_array_equal(got, want)
                assert count == int(want.sum())


@pytest.mark.parametrize("traced", [False, True])
def test_rescored_ranking_of_magnitudes_with_forced_entries(traced):
    # Many ties at the threshold across parts (rounded magnitudes, zeros) and forced entries
    # ranked first, as +inf.
    rng = np.random.default_rng(3)
    scores = [
        np.round(np.abs(rng.normal(size=(300, 200))), 1).astype("float32"),
        np.zeros((50,), "float32"),
        np.round(np.abs(rng.normal(size=(90, 100))), 1).astype("float32"),
    ]
    forced_values = [rng.random(tensor.shape) < 0.01 for tensor in scores]
    boosted = [
        np.where(f, np.inf, s).astype("float32") for f, s in zip(forced_values, scores, strict=True)
    ]
    total = sum(tensor.size for tensor in scores)
    forced = [keras.ops.convert_to_tensor(f) for f in forced_values]
    ranked = ranking(scores, forced, traced=traced, nonnegative=True)
    for k in (total // 10, total // 2, total - 40):
        expected = order_reference(boosted, k)
        found, _ = ranked(k)
        for want, got in zip(expected, found, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("min_density", [0.0, 0.15])
def test_global_masks_with_rescore_equal_those_of_held_scores(min_density):
    # min_density=0.15 forces the floors of the small tensor, whose scores are the lowest.
    rng = np.random.default_rng(4)
    scores = [
        np.round(np.abs(rng.normal(size=(200, 100))), 2).astype("float32"),
        np.full((3000,), 0.001, "float32"),
    ]
    variables = [keras.Variable(tensor) for tensor in scores]
    held = kp.allocation.global_masks(scores, 0.8, min_density, dtype="uint8", nonnegative=True)

    @tf.function(autograph=False)
    def rescored():
        return kp.allocation.global_masks(
            [v.value for v in variables],
            0.8,
            min_density,
            dtype="uint8",
            nonnegative=True,
            rescore=[reader(v) for v in variables],
        )

    for want, got in zip(held, rescored(), strict=True):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    assert (to_numpy(held[1]).sum() >= 450) == (min_density > 0)


@pytest.mark.parametrize("rescore", [False, True])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_lower_bounds_of_the_counts_never_exceed_them(rescore, nonnegative):
    # The global allocation checks its floors on lower bounds read from the radix histograms
    # (no count over the masks); the masks are the same either way.
    scores = signed_parts((30_001, 3, 20_000, 9), seed=8)
    if nonnegative:
        scores = [np.abs(tensor) for tensor in scores]
    total = sum(tensor.size for tensor in scores)
    exact = ranking(scores, traced=True, rescore=rescore, nonnegative=nonnegative)
    bounded = ranking(scores, traced=True, rescore=rescore, nonnegative=nonnegative, exact=False)
    pairs = []
    for k in (1, total // 3, total - 1, total):
        want, counts = exact(k)
        found, bounds = bounded(k)
        for mask, reference in zip(found, want, strict=True):
            np.testing.assert_array_equal(mask, reference)
        pairs += zip(bounds, counts, strict=True)
    assert all(0 <= bound <= count for bound, count in pairs)
    # Bounds, not the counts themselves (the threshold's bucket is not counted), nor zeros.
    assert any(bound < count for bound, count in pairs) and any(bound > 0 for bound, _ in pairs)


def test_floors_met_only_inside_the_thresholds_bucket_keep_the_plain_ranking():
    # Every score of the second tensor lies in the first radix bucket of the threshold: its
    # lower bound is 0, below its floor, though the plain ranking keeps far more than the floor.
    # The ranking with floors forced then runs, and gives the same masks.
    scores = [
        np.linspace(1.0, 2.0, 5000).astype("float32"),
        (1.5 + np.linspace(0.0, 1e-4, 3000)).astype("float32"),
    ]
    expected = order_reference(scores, masks.keep_count(8000, 0.5))
    assert 300 < expected[1].sum() < 3000
    variables = [keras.Variable(tensor) for tensor in scores]

    @tf.function(autograph=False)
    def ranked():
        values = [v.value for v in variables]
        return kp.allocation.global_masks(values, 0.5, 0.1, dtype="uint8", nonnegative=True)

    for want, got in zip(expected, ranked(), strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)


class Cubed(kp.criteria.Criterion):
    def score(self, weight, statistics):
        return keras.ops.abs(weight) ** 3


def test_pruned_model_hands_the_global_ranking_a_rescore_of_deterministic_criteria():
    # Only criteria that promise the same scores at every call are computed again; others
    # (here a custom one that does not say) keep their scores held.
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3)])
    for criterion, rescored in (("magnitude", True), ("random", True), (Cubed(), False)):
        pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion=criterion)
        for wrapper in kp.layers.find_wrappers(pruned):
            layer = wrapper.layer_scores()
            assert (layer.rescore is not None) == rescored
            if rescored:
                np.testing.assert_array_equal(to_numpy(layer.rescore(0)), to_numpy(layer.scores[0]))


def test_global_allocation_computes_scores_again_only_for_large_models(monkeypatch):
    # Holding every score costs 4 bytes per weight: fine for a small model, where computing
    # them again in each pass would cost more time than the memory saved is worth.
    from keras_prune.core import allocation

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(40), keras.layers.Dense(30)])
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5))
    layers = [wrapper.layer_scores() for wrapper in kp.layers.find_wrappers(pruned)]
    given = []
    original = allocation.global_masks

    def spy(*args, **kwargs):
        given.append(kwargs["rescore"])
        return original(*args, **kwargs)

    monkeypatch.setattr(allocation, "global_masks", spy)
    held = kp.allocation.GlobalAllocation(0.01).allocate(layers, [0.5, 0.5])
    monkeypatch.setattr(allocation, "_RESCORE_FROM", 6 * 40 + 40 * 30)  # exactly this model's
    rescored = kp.allocation.GlobalAllocation(0.01).allocate(layers, [0.5, 0.5])

    assert given[0] is None and len(given[1]) == 2
    for want, got in zip(held, rescored, strict=True):
        np.testing.assert_array_equal(to_numpy(got[0][0]), to_numpy(want[0][0]))
