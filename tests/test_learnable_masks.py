"""Learnable masks: when the top-k is chosen (`reselect`), exactness of strip, configs."""

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp

# Differentiates with tf.GradientTape in this process.
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape in this process"
)

LearnableMask = kp.mask_types.LearnableMask
SigmoidGateMask = kp.mask_types.SigmoidGateMask


def _pruned(mask, schedule):
    return compile_for_digits(kp.prune(small_cnn(), schedule=schedule, mask=mask))


def _effective(wrapper):
    return keras.ops.convert_to_numpy(wrapper.effective_weights()[0][1])


def _kept(wrapper):
    return _effective(wrapper) != 0


def test_default_reselects_at_the_schedule_updates_and_holds_the_mask_between():
    pruned = _pruned("learnable", kp.ConstantSparsity(0.75, 0, frequency=10))
    assert pruned.get_layer("dense1").mask_type.reselect == "schedule"
    kp.pruning.update_masks(pruned, 0)
    wrapper = pruned.get_layer("dense1")
    stored = keras.ops.convert_to_numpy(wrapper.masks[0])
    scores = keras.ops.convert_to_numpy(wrapper.scores[0])
    # The update stored the top-k of the scores.
    np.testing.assert_array_equal(stored, kp.masks.sparsity_mask(scores, 0.75))
    np.testing.assert_array_equal(_kept(wrapper), stored == 1)
    # New scores do not move the mask until the next update.
    reversed_scores = scores.max() - scores
    wrapper.scores[0].assign(reversed_scores)
    np.testing.assert_array_equal(_kept(wrapper), stored == 1)
    kp.pruning.update_masks(pruned, 10)
    np.testing.assert_array_equal(
        _kept(wrapper), keras.ops.convert_to_numpy(kp.masks.sparsity_mask(reversed_scores, 0.75))
    )


def test_reselect_step_follows_the_scores_at_every_forward_pass():
    pruned = _pruned(LearnableMask(reselect="step"), kp.ConstantSparsity(0.75, 0, frequency=10))
    kp.pruning.update_masks(pruned, 0)
    wrapper = pruned.get_layer("dense1")
    scores = keras.ops.convert_to_numpy(wrapper.scores[0])
    reversed_scores = scores.max() - scores
    wrapper.scores[0].assign(reversed_scores)
    np.testing.assert_array_equal(
        _kept(wrapper), keras.ops.convert_to_numpy(kp.masks.sparsity_mask(reversed_scores, 0.75))
    )


@pytest.mark.parametrize("make", [LearnableMask, lambda **kw: SigmoidGateMask(0.5, **kw)])
def test_both_modes_train_alike_when_the_schedule_updates_every_step(make, random_batch):
    """With frequency=1 the stored mask is the top-k of the very scores the step reads."""
    x, y = random_batch
    schedule = kp.PolynomialDecay(0.0, 0.8, 0, 100, frequency=1)
    runs = {}
    for reselect in ("schedule", "step"):
        pruned = _pruned(make(reselect=reselect), schedule)
        pruned.fit(
            x, y, epochs=2, batch_size=16, shuffle=False, verbose=0,
            callbacks=[kp.PruningCallback()],
        )  # fmt: skip
        # The next step's update: the stored mask catches up with the last step's scores.
        kp.pruning.update_masks(pruned, int(pruned.optimizer.iterations))
        runs[reselect] = pruned
    for a, b in zip(
        kp.layers.find_wrappers(runs["schedule"]),
        kp.layers.find_wrappers(runs["step"]),
        strict=True,
    ):
        for first, second in [(a.scores[0], b.scores[0]), (a.layer.kernel, b.layer.kernel)]:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second), atol=1e-5
            )
        np.testing.assert_array_equal(_kept(a), _kept(b))


@pytest.mark.parametrize(
    "mask", ["learnable", LearnableMask(reselect="step"), SigmoidGateMask(0.5)]
)
def test_strip_is_exact_and_the_keras_file_round_trips(mask, random_batch, tmp_path):
    x, y = random_batch
    pruned = _pruned(mask, kp.PolynomialDecay(0.0, 0.8, 0, 6, frequency=3))
    pruned.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[kp.PruningCallback()])
    expected = pruned.predict(x, verbose=0)
    np.testing.assert_array_equal(kp.strip(pruned).predict(x, verbose=0), expected)
    path = tmp_path / "learnable.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("dense1").mask_type == pruned.get_layer("dense1").mask_type
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


@pytest.mark.parametrize(
    "mask", [LearnableMask(), LearnableMask(reselect="step"), SigmoidGateMask(0.3, "step")]
)
def test_config_round_trip(mask):
    assert kp.mask_types.deserialize(kp.mask_types.serialize(mask)) == mask


def test_configs_saved_before_reselect_keep_selecting_every_step():
    # Models saved before `reselect` existed chose the top-k in every forward pass.
    assert LearnableMask.from_config({}).reselect == "step"
    assert SigmoidGateMask.from_config({"temperature": 0.5}).reselect == "step"


@pytest.mark.parametrize("make", [LearnableMask, SigmoidGateMask])
def test_unknown_reselect_names_the_argument_and_choices(make):
    with pytest.raises(ValueError, match=r"reselect.*'schedule', 'step'.*reselect='epoch'"):
        make(reselect="epoch")


@pytest.mark.parametrize("reselect", ["schedule", "step"])
def test_kept_weights_pass_through_unscaled(reselect):
    pruned = _pruned(LearnableMask(reselect=reselect), kp.ConstantSparsity(0.5, 0, frequency=1))
    kp.pruning.update_masks(pruned, 0)
    wrapper = pruned.get_layer("dense1")
    wrapper.scores[0].assign(wrapper.scores[0] + 0.3)  # (1 + 0.3) - 0.3 is not 1 in float32
    kernel = keras.ops.convert_to_numpy(wrapper.layer.kernel)
    effective = _effective(wrapper)
    kept = effective != 0
    np.testing.assert_array_equal(effective[kept], kernel[kept])


@on_tensorflow
@pytest.mark.parametrize("scores_dtype", ["float32", "float16"])
def test_straight_through_gradients_follow_movement_pruning(scores_dtype):
    # LearnableMask writes its gradient out by hand (one multiply forward, two backward); it must
    # give what the straight-through bracket of `forward_mask` gives, and Sanh et al.'s rule:
    # the weight's gradient is g * hard, the scores' is g * W for kept and pruned entries alike.
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weight = tf.Variable(rng.normal(size=(6, 5)).astype("float32"))
    scores = tf.Variable((np.abs(weight.numpy()) + 0.3).astype(scores_dtype))
    hard = (rng.random((6, 5)) > 0.5).astype("float32")
    upstream = rng.normal(size=(6, 5)).astype("float32")
    mask_type = LearnableMask()
    results = []
    for masked_weight in (mask_type.masked_weight, super(LearnableMask, mask_type).masked_weight):
        with tf.GradientTape() as tape:
            effective = masked_weight(weight, hard, scores)
            loss = tf.reduce_sum(effective * upstream)
        results.append(
            [effective.numpy(), *(g.numpy() for g in tape.gradient(loss, [weight, scores]))]
        )
    (effective, weight_grad, scores_grad), generic = results
    np.testing.assert_array_equal(effective, weight.numpy() * hard)
    np.testing.assert_array_equal(weight_grad, upstream * hard)
    assert scores_grad.dtype == scores_dtype
    np.testing.assert_array_equal(scores_grad, (upstream * weight.numpy()).astype(scores_dtype))
    for ours, bracket in zip(results[0], generic, strict=True):
        np.testing.assert_array_equal(ours, bracket)


@on_tensorflow
@pytest.mark.parametrize("scores_dtype", ["float32", "float16"])
def test_sigmoid_gate_gradients_are_the_brackets(scores_dtype):
    # SigmoidGateMask writes its gradient out too: the same forward value and weight gradient
    # as differentiating `(hard + (gate - stop_gradient(gate))) * gate`, and the scores'
    # gradient g * W * (hard + gate) * gate * (1 - gate) / temperature, for pruned entries too.
    import tensorflow as tf

    rng = np.random.default_rng(1)
    temperature = 0.7
    weight = tf.Variable(rng.normal(size=(6, 5)).astype("float32"))
    scores = tf.Variable(rng.normal(size=(6, 5)).astype(scores_dtype))
    hard = (rng.random((6, 5)) > 0.5).astype("float32")
    upstream = rng.normal(size=(6, 5)).astype("float32")
    mask_type = SigmoidGateMask(temperature=temperature)
    results = []
    for masked_weight in (mask_type.masked_weight, super(SigmoidGateMask, mask_type).masked_weight):
        with tf.GradientTape() as tape:
            effective = masked_weight(weight, hard, scores)
            loss = tf.reduce_sum(effective * upstream)
        results.append(
            [effective.numpy(), *(g.numpy() for g in tape.gradient(loss, [weight, scores]))]
        )
    (effective, weight_grad, scores_grad), (bracket, bracket_weight_grad, bracket_scores_grad) = (
        results
    )
    gate = 1 / (1 + np.exp(-scores.numpy().astype("float64") / temperature))
    np.testing.assert_allclose(effective, weight.numpy() * hard * gate, rtol=2e-3)
    np.testing.assert_array_equal(effective, bracket)
    np.testing.assert_array_equal(weight_grad, bracket_weight_grad)
    assert scores_grad.dtype == scores_dtype
    expected = upstream * weight.numpy() * (hard + gate) * gate * (1 - gate) / temperature
    assert np.all(scores_grad[hard == 0] != 0)  # pruned entries learn too
    tolerance = 1e-6 if scores_dtype == "float32" else 2e-3
    np.testing.assert_allclose(scores_grad, expected, rtol=tolerance * 10, atol=tolerance)
    np.testing.assert_allclose(scores_grad, bracket_scores_grad, rtol=tolerance, atol=tolerance)
