"""Channel dependency groups: membership, offsets, locks, scores, zeroing."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_prune.graph import channel_importance  # noqa: E402
from keras_prune.graph import groups as groups_lib  # noqa: E402
from keras_prune.reporting import drawing  # noqa: E402
from keras_prune.surgery import zeros  # noqa: E402

layers = keras.layers


def residual_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    y = layers.Conv2D(8, 1, name="c2")(x)
    x = layers.Add(name="add")([x, y])
    z = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    c = layers.Concatenate(name="cat")([x, z])
    f = layers.Flatten(name="flat")(layers.MaxPooling2D(4, name="pool")(c))
    h = layers.Dense(5, name="d1")(f)
    outputs = layers.Dense(2, name="out")(h)
    return keras.Model(inputs, outputs)


def by_layers(groups):
    return {tuple(group.layer_names): group for group in groups}


def members_of(group, name):
    return [member for member in group.members if member.layer.name == name]


def test_residual_add_depthwise_concat_flatten_share_one_group():
    groups = groups_lib.channel_groups(residual_cnn())
    assert [g.layer_names for g in groups] == [
        ["c1", "bn1", "c2", "dw", "d1"],
        ["d1", "out"],
        ["out"],
    ]
    first = groups[0]
    assert first.size == 8 and first.prunable
    roles = {(m.layer.name, m.variable.path.split("/")[-1], m.role) for m in first.members}
    assert ("c2", "kernel", "input") in roles and ("c2", "kernel", "output") in roles
    assert ("dw", "kernel", "channelwise") in roles and ("bn1", "gamma", "channelwise") in roles
    # The Dense after Concatenate + Flatten sees the group twice (offsets 0 and 8) at every one
    # of the 2x2 pooled positions: channel c owns rows p * 16 + offset + c.
    dense_rows = members_of(first, "d1")
    assert sorted(m.offset for m in dense_rows) == [0, 8]
    assert {(m.stride, m.repeat, m.axis) for m in dense_rows} == {(16, 4, 0)}
    np.testing.assert_array_equal(dense_rows[1].indices([1]), [9, 25, 41, 57])


def test_model_output_group_is_kept_with_reason():
    groups = groups_lib.channel_groups(residual_cnn())
    assert not groups[-1].prunable
    assert "model output" in groups[-1].reason


def test_unsupported_layer_locks_its_group_with_reason():
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, name="c1")(inputs)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.Conv2D(4, 1, name="c2")(x)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    groups = groups_lib.channel_groups(keras.Model(inputs, outputs))
    conv1 = by_layers(groups)[("c1", "ln")] if ("c1", "ln") in by_layers(groups) else groups[0]
    assert conv1.layer_names[0] == "c1"
    assert not conv1.prunable and "'ln'" in conv1.reason and "LayerNormalization" in conv1.reason
    assert groups[1].layer_names[0] == "c2" and groups[1].prunable


def test_softmax_over_channels_and_mismatched_add_lock():
    inputs = keras.Input((6, 6, 4))
    a = layers.Conv2D(4, 1, name="a")(inputs)
    soft = layers.Softmax(name="soft")(a)
    b = layers.Conv2D(4, 1, name="b")(soft)
    outputs = layers.Dense(2)(layers.Flatten()(b))
    groups = groups_lib.channel_groups(keras.Model(inputs, outputs))
    assert not groups[0].prunable and "Softmax" in groups[0].reason
    assert groups[1].prunable


def test_input_residual_locks_group():
    inputs = keras.Input((6, 6, 4))
    x = layers.Conv2D(4, 3, padding="same", name="c")(inputs)
    x = layers.Add()([inputs, x])
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    group = groups_lib.channel_groups(keras.Model(inputs, outputs))[0]
    assert group.layer_names[0] == "c" and group.reason == "model input"


def test_nested_sequential_is_inlined():
    keras.utils.set_random_seed(0)
    block = keras.Sequential(
        [
            keras.Input((6, 6, 8)),
            layers.Conv2D(8, 1, use_bias=False, name="inner_conv"),
            layers.BatchNormalization(name="inner_bn"),
        ],
        name="block",
    )
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.Add()([x, block(x)])
    outputs = layers.Dense(2, name="dense")(layers.GlobalAveragePooling2D()(x))
    groups = groups_lib.channel_groups(keras.Model(inputs, outputs))
    assert groups[0].layer_names == ["stem", "inner_conv", "inner_bn", "dense"]
    assert groups[0].prunable


def test_separable_conv_and_global_pooling_mlp_chain():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(6, 3, name="c")(inputs)
    x = layers.SeparableConv2D(5, 3, name="sep")(x)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(7, activation="relu", name="h")(x)
    outputs = layers.Dense(2, name="o")(x)
    groups = by_layers(groups_lib.channel_groups(keras.Model(inputs, outputs)))
    conv = groups[("c", "sep")]
    assert {(m.variable.path.split("/")[-1], m.role) for m in members_of(conv, "sep")} == {
        ("depthwise_kernel", "channelwise"),
        ("pointwise_kernel", "input"),
    }
    assert groups[("sep", "h")].size == 5 and groups[("h", "o")].size == 7


def test_grouped_conv_is_reported_not_broken():
    inputs = keras.Input((6, 6, 4))
    x = layers.Conv2D(4, 1, name="c")(inputs)
    x = layers.Conv2D(4, 3, groups=2, name="grouped")(x)
    outputs = layers.Dense(2)(layers.Flatten()(x))
    analysis = groups_lib.analyze(keras.Model(inputs, outputs))
    assert "grouped" in analysis.unsupported
    assert all(not g.prunable for g in analysis.groups() if "c" in g.layer_names)


def test_subclassed_model_is_refused_with_fix():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Functional or Sequential"):
        groups_lib.channel_groups(net)


def test_group_scores_match_numpy():
    model = residual_cnn()
    rng = np.random.default_rng(0)
    model.get_layer("bn1").gamma.assign(rng.normal(size=8).astype("float32"))
    group = groups_lib.channel_groups(model)[0]
    c1 = model.get_layer("c1").kernel.numpy()
    c2 = model.get_layer("c2").kernel.numpy()
    dw = model.get_layer("dw").kernel.numpy()
    l1 = np.abs(c1).sum((0, 1, 2)) + np.abs(c2).sum((0, 1, 2)) + np.abs(dw).sum((0, 1, 3))
    l2 = np.sqrt((c1**2).sum((0, 1, 2)) + (c2**2).sum((0, 1, 2)) + (dw**2).sum((0, 1, 3)))
    np.testing.assert_allclose(
        channel_importance.channel_scores(group, "magnitude", "l1"), l1, rtol=1e-5
    )
    np.testing.assert_allclose(channel_importance.channel_scores(group), l2, rtol=1e-5)
    np.testing.assert_allclose(
        channel_importance.channel_scores(group, "bn_scale"),
        np.abs(model.get_layer("bn1").gamma.numpy()),
    )
    with pytest.raises(ValueError, match="criterion='taylor2'"):
        channel_importance.channel_scores(group, "taylor2")


def test_zero_group_channels_zeroes_creators_and_scales_only():
    model = residual_cnn()
    group = groups_lib.channel_groups(model)[0]
    d1_before = model.get_layer("d1").kernel.numpy().copy()
    zeros.zero_group_channels(group, [2, 5])
    for name in ("c1", "c2"):
        kernel = model.get_layer(name).kernel.numpy()
        assert not kernel[..., [2, 5]].any() and kernel[..., [0, 1, 3]].all()
    assert not model.get_layer("c2").bias.numpy()[[2, 5]].any()
    bn = model.get_layer("bn1")
    assert not bn.gamma.numpy()[[2, 5]].any() and bn.gamma.numpy()[0] == 1
    assert bn.moving_variance.numpy()[2] == 1  # statistics untouched
    assert not model.get_layer("dw").kernel.numpy()[:, :, [2, 5]].any()
    np.testing.assert_array_equal(model.get_layer("d1").kernel.numpy(), d1_before)
    with pytest.raises(ValueError, match=r"channels=\[8\]"):
        zeros.zero_group_channels(group, [8])


def test_removable_channels_need_the_whole_group_zero():
    model = residual_cnn()
    analysis = groups_lib.analyze(model)
    groups = analysis.groups()
    # Zeroing only c1 leaves the residual partner c2 alive: nothing is removable.
    kernel = model.get_layer("c1").kernel
    kernel.assign(kernel.numpy() * (np.arange(8) != 3))
    assert not zeros.removable_channels(analysis, groups)[0].any()
    zeros.zero_group_channels(groups[0], [3])
    removable = zeros.removable_channels(analysis, groups)[0]
    np.testing.assert_array_equal(np.flatnonzero(removable), [3])


def test_mobilenet_v2_groups():
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4
    )
    groups = groups_lib.channel_groups(model)
    assert len(groups) == 26 and sum(g.prunable for g in groups) == 25
    stage = next(g for g in groups if "block_4_project" in g.layer_names)
    # One residual stage: every project conv of blocks 3-5 and the expands that read it.
    for name in ("block_3_project", "block_5_project", "block_4_expand", "block_6_expand"):
        assert name in stage.layer_names


def test_groups_svg_draws_every_group_and_hatches_kept_ones():
    svg = drawing.groups_svg(residual_cnn(), title="demo <cnn>")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "demo &lt;cnn&gt;" in svg
    for index in range(3):
        assert f">g{index}<" in svg
    assert svg.count('fill="url(#hatch)"') == 1  # the model output's group
    assert "g2 kept: feeds a model output" in svg
    # Rows follow the graph: the stem conv comes before the classifier.
    assert svg.index(">c1<") < svg.index(">out<")
