"""shrink / prune_channels / macs: smaller models with the same outputs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.engine.gradients import gradient_statistics  # noqa: E402
from keras_prune.graph import channel_importance  # noqa: E402
from keras_prune.graph import groups as groups_lib  # noqa: E402
from keras_prune.reporting import macs  # noqa: E402
from keras_prune.surgery import zeros  # noqa: E402
from keras_prune.surgery.shrink import shrink  # noqa: E402

layers = keras.layers


def randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics, so a removed channel that was not exactly zero would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(size=shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=shape).astype("float32"))
            layer.beta.assign(rng.normal(size=shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size=shape).astype("float32"))
    return model


def residual_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    y = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    y = layers.BatchNormalization(name="bn2")(y)
    x = layers.Add(name="add")([x, y])
    z = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    z = layers.Activation("swish", name="swish")(z)
    c = layers.Concatenate(name="cat")([x, z])
    c = layers.Conv2D(12, 3, strides=2, padding="same", name="c3")(c)
    f = layers.Flatten(name="flat")(layers.MaxPooling2D(2, name="pool")(c))
    h = layers.Dense(10, activation="relu", name="d1")(f)
    outputs = layers.Dense(3, name="out")(h)
    return randomize_batchnorm(keras.Model(inputs, outputs))


def batch(shape, seed=1):
    return np.random.default_rng(seed).normal(size=(4,) + shape).astype("float32")


def max_diff(a, b, x):
    return float(
        np.max(np.abs(keras.ops.convert_to_numpy(a(x)) - keras.ops.convert_to_numpy(b(x))))
    )


def zero_every_other(model, fraction_of=2):
    for group in groups_lib.channel_groups(model):
        if group.prunable:
            zeros.zero_group_channels(group, np.arange(0, group.size, fraction_of))


def test_shrink_residual_concat_flatten_equals_masked_model():
    model = residual_cnn()
    zero_every_other(model)
    small = shrink(model)
    x = batch((8, 8, 3))
    assert max_diff(model, small, x) <= 1e-5
    assert small.get_layer("c1").kernel.shape == (3, 3, 3, 4)
    assert small.get_layer("c3").kernel.shape == (3, 3, 8, 6)
    assert small.get_layer("d1").kernel.shape == (4 * 6, 5)
    assert small.get_layer("out").kernel.shape == (5, 3)
    report = small.shrink_report
    assert report.params_after < report.params_before
    assert report.channels_before == 8 + 12 + 10 and report.channels_after == 15
    assert "feeds a model output" in str(report)


def test_shrink_keeps_channels_that_are_not_zero_everywhere():
    model = residual_cnn()
    # Only c1's columns are zero; the residual partner c2 still writes channel 0.
    kernel = model.get_layer("c1").kernel
    kernel.assign(kernel.numpy() * (np.arange(8) != 0))
    small = shrink(model)
    assert small.get_layer("c1").kernel.shape[-1] == 8
    assert max_diff(model, small, batch((8, 8, 3))) <= 1e-5


@pytest.mark.parametrize("round_to", [4, 8])
def test_round_to_keeps_multiples(round_to):
    model = residual_cnn()
    for group in groups_lib.channel_groups(model):
        if group.prunable:
            zeros.zero_group_channels(group, np.arange(group.size - 3))
    small = shrink(model, round_to=round_to)
    assert small.get_layer("c1").kernel.shape[-1] == min(8, round_to)
    assert small.get_layer("c3").kernel.shape[-1] == round_to
    assert max_diff(model, small, batch((8, 8, 3))) <= 1e-5


def residual_block_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    branch = layers.Conv2D(6, 3, padding="same", use_bias=False, name="branch_a")(x)
    branch = layers.BatchNormalization(name="branch_a_bn")(branch)
    branch = layers.ReLU(name="branch_relu")(branch)
    branch = layers.Conv2D(8, 1, use_bias=False, name="branch_b")(branch)
    branch = layers.BatchNormalization(name="branch_b_bn")(branch)
    x = layers.Add(name="residual")([x, branch])
    outputs = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x))
    return randomize_batchnorm(keras.Model(inputs, outputs))


def test_zero_residual_branch_is_dropped():
    model = residual_block_model()
    groups = groups_lib.channel_groups(model)
    inner = next(g for g in groups if g.layer_names[0] == "branch_a")
    zeros.zero_group_channels(inner, np.arange(inner.size))
    bn = model.get_layer("branch_b_bn")
    bn.gamma.assign(np.zeros(8, "float32"))
    bn.beta.assign(np.zeros(8, "float32"))
    small = shrink(model)
    names = [layer.name for layer in small.layers]
    for dropped in ("branch_a", "branch_a_bn", "branch_b", "branch_b_bn", "residual"):
        assert dropped not in names
    assert set(small.shrink_report.dropped["residual"]) >= {"branch_a", "branch_b_bn"}
    assert max_diff(model, small, batch((8, 8, 3))) <= 1e-5


def test_sequential_mlp_dense_chain():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            layers.Dense(16, activation="relu", name="h1"),
            layers.Dropout(0.1),
            layers.Dense(16, activation="tanh", name="h2"),
            layers.Dense(4, name="out"),
        ]
    )
    zero_every_other(model, 4)
    small = shrink(model)
    assert [small.get_layer(n).units for n in ("h1", "h2", "out")] == [12, 12, 4]
    assert max_diff(model, small, batch((12,))) <= 1e-5


def test_sigmoid_gate_channel_stays_removable_through_multiply():
    """Squeeze-excite: a zero main channel times sigmoid(anything) is zero."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="main")(inputs)
    se = layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = layers.Conv2D(2, 1, activation="relu", name="squeeze")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(se)
    x = layers.Multiply()([x, se])
    outputs = layers.Dense(2)(layers.Flatten()(layers.Conv2D(4, 1, name="proj")(x)))
    model = keras.Model(inputs, outputs)
    group = next(g for g in groups_lib.channel_groups(model) if g.layer_names[0] == "main")
    assert "excite" in group.layer_names
    zeros.zero_group_channels(group, [1, 2, 3])
    small = shrink(model)
    assert small.get_layer("excite").kernel.shape[-1] == 5
    assert max_diff(model, small, batch((6, 6, 3))) <= 1e-5


def test_unsupported_layers_are_kept_and_reported():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, name="c1")(inputs)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.Conv2D(8, 1, name="c2")(x)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    zero_every_other(model)
    kernel = model.get_layer("c1").kernel
    kernel.assign(kernel.numpy() * (np.arange(8) % 2))
    small = shrink(model)
    assert small.get_layer("c1").kernel.shape[-1] == 8
    assert small.get_layer("c2").kernel.shape[-1] == 4
    assert "ln" in small.shrink_report.unsupported
    assert max_diff(model, small, batch((6, 6, 3))) <= 1e-5


def test_nested_model_is_inlined_and_equal():
    keras.utils.set_random_seed(0)
    block = keras.Sequential(
        [keras.Input((6, 6, 8)), layers.Conv2D(8, 1, name="inner"), layers.ReLU()], name="blk"
    )
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = block(x)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    zero_every_other(model)
    small = shrink(model)
    assert small.get_layer("inner").kernel.shape == (1, 1, 4, 4)
    assert max_diff(model, small, batch((6, 6, 3))) <= 1e-5


def test_shrunk_model_saves_and_reloads(tmp_path):
    model = residual_cnn()
    zero_every_other(model)
    small = shrink(model)
    path = str(tmp_path / "small.keras")
    small.save(path)
    reloaded = keras.saving.load_model(path)
    x = batch((8, 8, 3))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(small(x)), keras.ops.convert_to_numpy(reloaded(x))
    )
    config_copy = keras.Model.from_config(small.get_config())
    assert config_copy.count_params() == small.count_params()


def test_shrink_rejects_bad_input():
    with pytest.raises(TypeError, match="keras.Model"):
        shrink(layers.Dense(2))
    with pytest.raises(ValueError, match="round_to=0"):
        shrink(residual_cnn(), round_to=0)


def test_prune_channels_fraction_removes_lowest_scores_and_keeps_original():
    model = residual_cnn()
    before = [w.copy() for w in model.get_weights()]
    small = kp.prune_channels(model, sparsity=0.5, criterion="magnitude", norm="l1")
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    groups = groups_lib.channel_groups(model)
    for index, removed in small.pruned_channels.items():
        scores = channel_importance.channel_scores(groups[index], "magnitude", "l1")
        kept = np.setdiff1d(np.arange(groups[index].size), removed)
        assert scores[removed].max() <= scores[kept].min()
    # The shrunk model computes what the model with those channels zeroed computes.
    zeroed = keras.models.clone_model(model)
    zeroed.set_weights(model.get_weights())
    for index, removed in small.pruned_channels.items():
        zeros.zero_group_channels(groups_lib.channel_groups(zeroed)[index], removed)
    assert max_diff(zeroed, small, batch((8, 8, 3))) <= 1e-5
    assert small.get_layer("c1").kernel.shape[-1] == 4
    assert macs.count(small)["macs"] < macs.count(model)["macs"] / 2


def test_prune_channels_target_macs_and_params():
    model = residual_cnn()
    total = macs.count(model)
    small = kp.prune_channels(model, target_macs=total["macs"] // 2)
    assert macs.count(small)["macs"] <= total["macs"] // 2
    small = kp.prune_channels(
        model, target_params=total["params"] * 2 // 3, criterion="bn_scale", round_to=2
    )
    assert macs.count(small)["params"] <= total["params"] * 2 // 3


def test_prune_channels_refuses_to_empty_a_layer():
    model = residual_cnn()
    with pytest.raises(ValueError, match=r"largest feasible sparsity is 0\.8750"):
        kp.prune_channels(model, sparsity=0.95)
    with pytest.raises(ValueError, match="smallest reachable is"):
        kp.prune_channels(model, target_macs=10)
    with pytest.raises(ValueError, match="exactly one of"):
        kp.prune_channels(model, sparsity=0.5, target_macs=10)
    with pytest.raises(ValueError, match="sparsity=1.5"):
        kp.prune_channels(model, sparsity=1.5)
    with pytest.raises(ValueError, match="criterion='nope'"):
        kp.prune_channels(model, sparsity=0.5, criterion="nope")


def test_prune_channels_filters_limit_groups():
    model = residual_cnn()
    small = kp.prune_channels(model, sparsity=0.5, filters="d1")
    assert small.get_layer("d1").units == 5
    assert small.get_layer("c1").kernel.shape[-1] == 8


def test_macs_count_matches_formula_and_compare_table():
    conv = keras.Sequential([keras.Input((10, 10, 3)), layers.Conv2D(4, 3), layers.Flatten()])
    dense = keras.Sequential([keras.Input((5,)), layers.Dense(7)])
    assert macs.count(conv)["macs"] == 8 * 8 * 3 * 3 * 3 * 4
    assert macs.count(conv)["params"] == 3 * 3 * 3 * 4 + 4
    assert macs.count(dense) == {"params": 42, "macs": 35, "bytes": 42 * 4}
    model = residual_cnn()
    zero_every_other(model)
    comparison = macs.compare(model, shrink(model))
    assert comparison.ratio("macs") > 2
    text = str(comparison)
    assert "c1" in text and "MACs" in text and "x smaller" in text


def test_mobilenet_v2_prune_half_equals_zeroed_model():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5, classifier_activation=None
    )
    randomize_batchnorm(model)
    zero_every_other(model)
    small = shrink(model, round_to=4)
    assert max_diff(model, small, batch((32, 32, 3))) <= 1e-5
    assert macs.count(small)["macs"] < macs.count(model)["macs"] / 2.5


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="runs the TFLite converter in this process"
)
def test_shrunk_model_runs_on_litert():
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = residual_cnn()
    zero_every_other(model)
    small = shrink(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(small)
    interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    x = batch((8, 8, 3))[:1]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(result, keras.ops.convert_to_numpy(model(x)), atol=1e-4)


def test_channel_pruning_during_training_masks_whole_groups_and_shrinks_exactly():
    import keras_prune as kp

    model = residual_cnn()
    # Sparsity starts at 0, so the compiled train step is traced before any channel is masked:
    # BatchNorm must still be held at zero once masks appear later.
    schedule = kp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)
    pruned = kp.prune(model, schedule=schedule, granularity="channel")
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 64)
    pruned.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[kp.PruningCallback()])
    # Residual partners lose the same channels, and the BatchNorm between them follows.
    dead = {
        name: ~keras.ops.convert_to_numpy(pruned.get_layer(name).layer.kernel).reshape(-1, 8).any(0)
        for name in ("c1", "c2")
    }
    np.testing.assert_array_equal(dead["c1"], dead["c2"])
    assert dead["c1"].sum() == 4
    assert not keras.ops.convert_to_numpy(pruned.get_layer("bn1").layer.gamma)[dead["c1"]].any()
    assert not keras.ops.convert_to_numpy(pruned.get_layer("bn1").layer.beta)[dead["c1"]].any()
    # The model output keeps its channels; everything masked is removed by shrink.
    out = pruned.get_layer("out")  # not wrapped: its channels cannot be removed
    assert keras.ops.convert_to_numpy(getattr(out, "layer", out).kernel).all()
    small = shrink(pruned)
    assert small.get_layer("c1").kernel.shape[-1] == 4
    assert small.get_layer("c3").kernel.shape[-1] == 6
    assert small.get_layer("d1").units == 5
    assert max_diff(pruned, small, x[:4]) <= 1e-5


def test_update_masks_in_a_custom_loop_couples_depthwise_and_separable():
    import keras_prune as kp

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 1, name="expand")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    outputs = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x))
    pruned = kp.prune(
        keras.Model(inputs, outputs),
        schedule=kp.ConstantSparsity(0.5, 0, frequency=1),
        granularity="channel",
    )
    kp.pruning.update_masks(pruned, 0)
    expand_dead = ~keras.ops.convert_to_numpy(pruned.get_layer("expand").layer.kernel).reshape(
        -1, 8
    ).any(0)
    dw = keras.ops.convert_to_numpy(pruned.get_layer("dw").layer.kernel)
    np.testing.assert_array_equal(~dw.reshape(-1, 8).any(0), expand_dead)
    assert not keras.ops.convert_to_numpy(pruned.get_layer("dw").layer.bias)[expand_dead].any()
    small = shrink(pruned)
    assert small.get_layer("dw").kernel.shape[-2] == 4
    assert small.get_layer("sep").pointwise_kernel.shape[-2:] == (4, 3)
    assert max_diff(pruned, small, batch((6, 6, 3))) <= 1e-5


def test_gradual_channel_pruning_ranks_groups_by_the_wrappers_criterion():
    import keras_prune as kp
    from keras_prune.core import criteria

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = layers.Dense(8, name="hidden")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    outputs = layers.Dense(2, name="out")(layers.ReLU()(x))
    model = keras.Model(inputs, outputs)
    preference = np.array([8, 1, 7, 2, 6, 3, 5, 4], "float32")  # keep channels 0, 2, 4, 6

    def prefer(weight, statistics):
        return keras.ops.ones_like(weight) * preference

    def kept_channels(criterion):
        pruned = kp.prune(
            model,
            schedule=kp.ConstantSparsity(0.5, 0, frequency=1),
            granularity="channel",
            criterion=criterion,
            filters="hidden",
        )
        kp.pruning.update_masks(pruned, 0)
        kernel = keras.ops.convert_to_numpy(pruned.get_layer("hidden").layer.kernel)
        gamma = keras.ops.convert_to_numpy(pruned.get_layer("bn").layer.gamma)
        np.testing.assert_array_equal(kernel.any(0), gamma != 0)  # the group moved together
        return list(np.flatnonzero(kernel.any(0)))

    assert kept_channels(criteria.FunctionCriterion(prefer)) == [0, 2, 4, 6]
    norms = np.linalg.norm(keras.ops.convert_to_numpy(model.get_layer("hidden").kernel), axis=0)
    assert kept_channels("magnitude") == sorted(np.argsort(-norms)[:4])


def test_channel_wrappers_outside_any_group_prune_per_layer_only_when_asked():
    import keras_prune as kp

    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 4))
    x = layers.LSTM(8, return_sequences=True, name="lstm")(inputs)
    x = layers.Dense(6, name="hidden")(x)
    outputs = layers.Dense(2, name="out")(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    # By default channel granularity never masks what kp.shrink cannot remove.
    report = kp.prune(model, granularity="channel").pruning_report
    assert (
        "lstm" in report.skipped and "none of its channels can be removed" in report.skipped["lstm"]
    )
    pruned = kp.prune(
        model,
        schedule=kp.ConstantSparsity(0.5, 0, frequency=1),
        granularity=kp.granularity.Channel(only_removable=False),
    )
    updated = {wrapper.name for wrapper in kp.pruning.update_masks(pruned, 0)}
    assert {"lstm", "hidden"} <= updated
    lstm_kernel = keras.ops.convert_to_numpy(pruned.get_layer("lstm").layer.cell.kernel)
    assert (~lstm_kernel.any(0)).sum() == 16  # half of the 32 gate units, layer by layer
    hidden = keras.ops.convert_to_numpy(pruned.get_layer("hidden").layer.kernel)
    assert (~hidden.any(0)).sum() == 3


def test_loss_gradients_and_taylor_scores_match_the_analytic_gradient():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(3, bias_initializer="ones", name="a"),
            layers.Dense(1, name="b"),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    t = rng.normal(size=(8, 1)).astype("float32")
    gradients = gradient_statistics(model, (x, t), loss="mse", batch_size=4)
    w1, b1, w2, b2 = (keras.ops.convert_to_numpy(w).astype(np.float64) for w in model.weights)
    hidden = x @ w1 + b1
    d_out = 2 * (hidden @ w2 + b2 - t) / len(x)
    d_hidden = d_out @ w2.T
    a = model.get_layer("a")
    np.testing.assert_allclose(
        gradients[id(a.kernel)].mean_gradient, x.T @ d_hidden, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        gradients[id(a.bias)].mean_gradient, d_hidden.sum(0), rtol=1e-4, atol=1e-6
    )
    group = groups_lib.channel_groups(model)[0]
    expected = np.abs((w1 * (x.T @ d_hidden)).sum(0) + b1 * d_hidden.sum(0))
    np.testing.assert_allclose(
        channel_importance.channel_scores(group, "taylor", statistics=gradients),
        expected,
        rtol=1e-4,
    )
    with pytest.raises(ValueError, match="statistics="):
        channel_importance.channel_scores(group, "taylor")


def test_prune_channels_taylor_needs_data_and_runs():
    model = residual_cnn()
    with pytest.raises(ValueError, match="calibration_data"):
        kp.prune_channels(model, sparsity=0.5, criterion="taylor")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    small = kp.prune_channels(
        model, sparsity=0.5, criterion="taylor", calibration_data=(x, y), loss=loss
    )
    assert small.get_layer("c1").kernel.shape[-1] == 4
    gradients = gradient_statistics(model, (x, y), loss=loss)
    group = groups_lib.channel_groups(model)[0]
    scores = channel_importance.channel_scores(group, "taylor", statistics=gradients)
    removed = small.pruned_channels[0]
    kept = np.setdiff1d(np.arange(8), removed)
    assert scores[removed].max() <= scores[kept].min()


def test_zero_channels_of_a_dense_with_sigmoid_are_kept():
    # sigmoid(0) = 0.5: a channel with zero kernel column and bias still outputs 0.5.
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="sigmoid", name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="b")(hidden))
    kernel, bias = model.get_layer("a").get_weights()
    kernel[:, :2] = 0
    bias[:2] = 0
    model.get_layer("a").set_weights([kernel, bias])
    small = shrink(model)
    assert small.get_layer("a").kernel.shape[-1] == 6
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(*map(keras.ops.convert_to_numpy, (small(x), model(x))), atol=1e-6)


def test_batchnorm_without_gamma_loses_its_pruned_channels():
    # InceptionV3's BatchNormalization(scale=False): a removed channel would output
    # -moving_mean / sqrt(moving_variance) unless its running mean is zeroed with beta.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(8, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    data = np.random.default_rng(0).random((32, 12, 12, 3)).astype("float32")
    model.compile("adam", "mse")
    model.fit(data, np.random.default_rng(1).random((32, 3)), epochs=2, verbose=0)
    means = [np.array(layer.moving_mean) for layer in model.layers if hasattr(layer, "moving_mean")]
    masked = kp.prune_once(model, 0.5, granularity="channel")
    small = kp.shrink(masked)
    assert kp.reporting.macs.count(small)["macs"] < 0.5 * kp.reporting.macs.count(model)["macs"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(data)), keras.ops.convert_to_numpy(masked(data)), atol=1e-5
    )
    # The user's model keeps its statistics.
    after = [np.array(layer.moving_mean) for layer in model.layers if hasattr(layer, "moving_mean")]
    for before, now in zip(means, after, strict=True):
        np.testing.assert_array_equal(before, now)
