"""Depth pruning: residual blocks found in the graph, scored by the output change without them,
and removed by kp.shrink (the shallower model equals the model built without them)."""

import keras
import numpy as np
import pytest
from language_models import AddPositions, tiny_lm, token_data

import keras_prune as kp


def _without_block(model, removed):
    """`tiny_lm` rebuilt by hand from its own layers, without transformer layer `removed`."""
    tokens = keras.Input((12,), dtype="int32")
    x = model.get_layer("positions")(model.get_layer("embed")(tokens))
    for i in range(2):
        if i == removed:
            continue
        h = model.get_layer(f"ln_a{i}")(x)
        h = model.get_layer(f"attn{i}")(h, h, use_causal_mask=True)
        x = model.get_layer(f"res_a{i}")([x, h])
        h = model.get_layer(f"ffn_out{i}")(
            model.get_layer(f"ffn_in{i}")(model.get_layer(f"ln_f{i}")(x))
        )
        x = model.get_layer(f"res_f{i}")([x, h])
    return keras.Model(tokens, model.get_layer("logits")(model.get_layer("ln_out")(x)))


def test_residual_blocks_of_a_transformer():
    model = tiny_lm()
    blocks = kp.surgery.depth.residual_blocks(model)
    assert [(b.name, b.kind) for b in blocks] == [
        ("res_a0", "branch"), ("res_f0", "branch"), ("res_a1", "branch"), ("res_f1", "branch")
    ]  # fmt: skip
    assert blocks[0].layers == ["ln_a0", "attn0"]
    assert blocks[1].layers == ["ln_f0", "ffn_in0", "ffn_out0"]
    layers = kp.surgery.depth.residual_blocks(model, span=2)
    assert [b.name for b in layers] == ["res_a0+res_f0", "res_a1+res_f1"]
    assert layers[0].parameters == sum(
        model.get_layer(name).count_params() for name in blocks[0].layers + blocks[1].layers
    )


def test_residual_blocks_of_a_resnet():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(keras.layers.ReLU()(h))
    x = keras.layers.ReLU(name="out1")(keras.layers.Add(name="add1")([x, h]))
    projected = keras.layers.Conv2D(8, 1, name="projection")(x)
    h = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.Add(name="add2")([projected, h])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    blocks = kp.surgery.depth.residual_blocks(model)
    assert [b.name for b in blocks] == ["add1"]  # add2 has no identity path
    assert blocks[0].layers[0] == "c1" and blocks[0].layers[-1] == "bn1"


def test_scores_and_removal_match_the_model_built_without_the_block():
    model = tiny_lm()
    x, _ = token_data(16)
    scores = kp.surgery.depth.block_importance(model, x, span=2)
    dense = model.predict(x, verbose=0)
    for index, name in enumerate(["res_a0+res_f0", "res_a1+res_f1"]):
        without = _without_block(model, index).predict(x, verbose=0)
        expected = np.square(without - dense).sum() / np.square(dense).sum()
        assert scores[name] == pytest.approx(expected, rel=1e-4)
    shallow = kp.surgery.depth.prune_depth(model, 1, x, span=2)
    removed = shallow.depth_report.removed[0]
    index = ["res_a0+res_f0", "res_a1+res_f1"].index(removed)
    assert removed == min(scores, key=scores.get)
    names = {layer.name for layer in shallow.layers}
    assert f"attn{index}" not in names and f"ffn_in{index}" not in names
    np.testing.assert_allclose(
        shallow.predict(x, verbose=0),
        _without_block(model, index).predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )
    assert shallow.count_params() == model.count_params() - shallow.depth_report.parameters_removed


def test_shrink_removes_named_blocks_and_masked_structure_together():
    model = tiny_lm()
    x, _ = token_data(16)
    masked = kp.surgery.heads.mask_heads(model, 0.5, x)
    small = kp.shrink(masked, remove_blocks=["res_f1"])
    assert "ffn_in1" not in {layer.name for layer in small.layers}
    assert small.get_layer("attn1").num_heads == 2
    assert small.shrink_report.removed_blocks == {"res_f1": ["ln_f1", "ffn_in1", "ffn_out1"]}
    with pytest.raises(ValueError, match="no residual block named 'nope'"):
        kp.shrink(model, remove_blocks=["nope"])
    with pytest.raises(ValueError, match="count"):
        kp.surgery.depth.prune_depth(model, 4, x)


def test_keras_hub_blocks_are_removed_whole():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    first = keras_hub.layers.TransformerEncoder(32, 2, name="enc0")
    second = keras_hub.layers.TransformerEncoder(32, 2, name="enc1")
    head = keras.layers.Dense(3, name="head")
    model = keras.Model(inputs, head(second(first(inputs))))
    assert [(b.name, b.kind) for b in kp.surgery.depth.residual_blocks(model)] == [
        ("enc0", "layer"), ("enc1", "layer")
    ]  # fmt: skip
    x = np.random.default_rng(0).normal(size=(8, 6, 16)).astype("float32")
    shallow = kp.shrink(model, remove_blocks=["enc1"])
    expected = keras.ops.convert_to_numpy(head(first(x)))
    np.testing.assert_allclose(shallow.predict(x, verbose=0), expected, atol=1e-5)


def test_layer_blocks_need_two_prunable_weights():
    inputs = keras.Input((12, 16))
    model = keras.Model(inputs, AddPositions(12)(inputs))
    assert kp.surgery.depth.residual_blocks(model) == []
