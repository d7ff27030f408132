"""Channel groups, zeros and shrink through operation nodes that are not layers (`x + h`,
`x * c`, `x[:, 0]`, `keras.ops.*`), and on MobileNetV3 / ConvNeXt, which are built from them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_prune.graph import groups as groups_lib  # noqa: E402
from keras_prune.surgery import zeros  # noqa: E402
from keras_prune.surgery.shrink import shrink  # noqa: E402

layers = keras.layers
ops = keras.ops


def batch(shape, seed=1):
    return np.random.default_rng(seed).normal(size=(4,) + shape).astype("float32")


def max_diff(a, b, x):
    first, second = a(x), b(x)
    return max(
        float(np.max(np.abs(ops.convert_to_numpy(p) - ops.convert_to_numpy(q))))
        for p, q in zip(keras.tree.flatten(first), keras.tree.flatten(second), strict=True)
    )


def zero_every_other(model):
    for group in groups_lib.channel_groups(model):
        if group.prunable:
            zeros.zero_group_channels(group, np.arange(0, group.size, 2))


def group_of(model, name):
    return next(g for g in groups_lib.channel_groups(model) if g.layer_names[0] == name)


def randomize_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(size=shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=shape).astype("float32"))
            layer.beta.assign(rng.normal(size=shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size=shape).astype("float32"))
    return model


def operator_model():
    """Residual `x + h`, scaling `x * c`, `keras.ops.relu` and a gate `x * sigmoid(g)`."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    h = layers.Conv2D(8, 1, name="branch")(ops.relu(x))
    x = (x + h) * (1.0 / 6.0)
    gate = layers.Conv2D(8, 1, name="gate")(layers.GlobalAveragePooling2D(keepdims=True)(x))
    x = x * ops.sigmoid(gate)
    x = layers.Conv2D(6, 1, name="project")(x)
    outputs = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_operators_merge_and_keep_channels_and_shrink_exactly():
    model = operator_model()
    group = group_of(model, "stem")
    assert group.prunable
    assert group.layer_names == ["stem", "branch", "gate", "project"]
    roles = {(m.layer.name, m.role) for m in group.members}
    assert {("branch", "output"), ("branch", "input"), ("gate", "output")} <= roles
    zero_every_other(model)
    small = shrink(model)
    assert small.get_layer("stem").kernel.shape[-1] == 4
    assert small.get_layer("gate").kernel.shape == (1, 1, 4, 4)
    assert small.get_layer("project").kernel.shape == (1, 1, 4, 3)
    assert max_diff(model, small, batch((6, 6, 3))) <= 1e-5


def test_adding_a_constant_keeps_zero_channels_alive():
    """`x * c` maps zero to zero, `x + 3.0` does not: only the first channel can go."""

    def build(operator):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 4, 3))
        x = layers.Conv2D(8, 1, name="c1")(inputs)
        x = layers.Conv2D(4, 1, name="c2")(operator(x))
        return keras.Model(inputs, layers.Flatten()(x))

    for operator, removable in ((lambda x: x * 2.5, True), (lambda x: x + 3.0, False)):
        model = build(operator)
        zeros.zero_group_channels(group_of(model, "c1"), [1, 4])
        analysis = groups_lib.analyze(model)
        groups = analysis.groups()
        found = zeros.removable_channels(analysis, groups)[groups[0].index]
        assert found.any() == removable
        small = shrink(model)
        assert small.get_layer("c1").kernel.shape[-1] == (6 if removable else 8)
        assert max_diff(model, small, batch((4, 4, 3))) <= 1e-5


def test_indexing_reductions_and_axis_operations_that_spare_the_channel_axis_keep_channels():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 6, 3))
    x = layers.Conv2D(8, 1, name="c1")(inputs)
    x = ops.squeeze(ops.expand_dims(x, 1), axis=1)
    first_row = layers.Conv1D(4, 1, name="row")(x[:, 0])
    pooled = layers.Dense(4, name="pooled")(ops.mean(x, axis=(1, 2)))
    joined = ops.concatenate([ops.max(first_row, axis=1), pooled], axis=-1)
    outputs = layers.Dense(2, name="out")(joined)
    model = keras.Model(inputs, outputs)
    group = group_of(model, "c1")
    assert group.prunable and group.layer_names == ["c1", "row", "pooled"]
    assert group_of(model, "row").layer_names == ["row", "out"]
    zero_every_other(model)
    small = shrink(model)
    assert small.get_layer("c1").kernel.shape[-1] == 4
    assert small.get_layer("row").kernel.shape == (1, 4, 2)
    assert small.get_layer("out").kernel.shape == (2 + 2, 2)
    assert max_diff(model, small, batch((5, 6, 3))) <= 1e-5


@pytest.mark.parametrize(
    "operation, reason",
    [
        (lambda x: x[..., :4], "indexes the channel axis"),
        (lambda x: ops.mean(x, axis=-1, keepdims=True), "reduces the channel axis"),
        (lambda x: ops.expand_dims(x, -1), "adds an axis after the channels"),
        (lambda x: ops.softmax(x), "operation Softmax is not understood by channel surgery"),
        (lambda x: x * np.arange(8, dtype="float32"), "a constant with one value per channel"),
    ],
)
def test_operations_on_the_channel_axis_lock_their_group_with_a_reason(operation, reason):
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(8, 1, name="c1")(inputs)
    outputs = layers.Dense(2)(layers.Flatten()(operation(x)))
    model = keras.Model(inputs, outputs)
    group = group_of(model, "c1")
    assert not group.prunable and reason in group.reason
    assert reason in " ".join(groups_lib.analyze(model).unsupported.values())
    zero_every_other(model)
    assert shrink(model).get_layer("c1").kernel.shape[-1] == 8


def test_zero_branch_of_an_add_operator_is_dropped():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    branch = layers.Conv2D(4, 1, name="branch_a")(x)
    branch = layers.Conv2D(8, 1, name="branch_b")(ops.relu(branch))
    x = x + branch
    outputs = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    zeros.zero_group_channels(group_of(model, "branch_a"), np.arange(4))
    small = shrink(model)
    names = [layer.name for layer in small.layers]
    assert "branch_a" not in names and "branch_b" not in names
    (merge,) = small.shrink_report.dropped
    assert set(small.shrink_report.dropped[merge]) >= {"branch_a", "branch_b"}
    assert max_diff(model, small, batch((6, 6, 3))) <= 1e-5


def test_multiple_inputs_and_outputs_keep_their_structure():
    keras.utils.set_random_seed(0)
    image = keras.Input((4, 4, 3), name="image")
    extra = keras.Input((5,), name="extra")
    x = layers.Conv2D(8, 1, name="c1")(image)
    features = layers.Dense(6, name="hidden")(
        ops.concatenate([ops.mean(x, axis=(1, 2)), extra], axis=-1)
    )
    model = keras.Model(
        {"image": image, "extra": extra},
        {"logits": layers.Dense(2, name="logits")(features), "map": layers.Conv2D(3, 1)(x)},
    )
    zero_every_other(model)
    small = shrink(model)
    assert small.get_layer("hidden").kernel.shape == (4 + 5, 3)
    data = {"image": batch((4, 4, 3)), "extra": batch((5,), seed=2)}
    result = small(data)
    assert set(result) == {"logits", "map"}
    assert [tensor.name for tensor in small.inputs] == ["extra", "image"]
    assert max_diff(model, small, data) <= 1e-5


def test_wrapped_batchnorm_is_treated_like_a_plain_one():
    import keras_prune as kp

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, use_bias=False, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(4, 1, name="c2")(ops.relu(x))
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0), granularity="channel")
    assert isinstance(pruned.get_layer("bn"), kp.PruneWrapper)
    plain, wrapped = groups_lib.channel_groups(model), groups_lib.channel_groups(pruned)
    assert [(g.layer_names, g.size, g.reason) for g in plain] == [
        (g.layer_names, g.size, g.reason) for g in wrapped
    ]
    inner = pruned.get_layer("bn").layer
    bn_members = [m for m in wrapped[0].members if m.layer.name == "bn"]
    assert {id(m.variable) for m in bn_members} == {
        id(v) for v in (inner.gamma, inner.beta, inner.moving_mean, inner.moving_variance)
    }
    assert all(m.layer is pruned.get_layer("bn") for m in bn_members)


def test_mobilenet_v3_small_groups_and_exact_shrink():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), weights=None, classes=5, classifier_activation=None
    )
    randomize_batchnorm(model)
    analysis = groups_lib.analyze(model)
    groups = analysis.groups()
    assert analysis.unsupported == {}
    assert len(groups) == 28 and sum(g.prunable for g in groups) == 27
    # A squeeze-excite gate (hard sigmoid: `x + 3`, ReLU6, `* 1/6`) joins its block's group.
    assert groups[0].layer_names[-3:] == [
        "expanded_conv_squeeze_excite_conv",
        "expanded_conv_squeeze_excite_conv_1",
        "expanded_conv_project",
    ]
    zero_every_other(model)
    small = shrink(model)
    assert max_diff(model, small, batch((96, 96, 3))) <= 1e-5
    from keras_prune.reporting import macs

    assert macs.count(small)["macs"] < macs.count(model)["macs"] / 2.5


def test_convnext_tiny_mlp_groups_shrink_exactly():
    keras.utils.set_random_seed(0)
    model = keras.applications.ConvNeXtTiny(
        input_shape=(32, 32, 3), weights=None, classes=5, classifier_activation=None
    )
    groups = groups_lib.channel_groups(model)
    prunable = [g for g in groups if g.prunable]
    # The residual streams go through LayerNormalization (kept whole, with the reason); the
    # 4x-wide MLP of every block is removable: Dense -> GELU -> Dense.
    assert len(prunable) == 18
    assert all(g.layer_names[0].endswith("pointwise_conv_1") for g in prunable)
    assert any("LayerNormalization" in str(g.reason) for g in groups)
    zero_every_other(model)
    small = shrink(model)
    first = "convnext_tiny_stage_0_block_0_pointwise_conv_1"
    assert small.get_layer(first).kernel.shape == (96, 192)
    assert max_diff(model, small, batch((32, 32, 3))) <= 1e-5
