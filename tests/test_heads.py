"""Attention heads: importance against NumPy, masking through the mask engine, and removal by
kp.shrink with the masked model's outputs."""

import keras
import numpy as np
import pytest
from language_models import tiny_lm, token_data

import keras_prune as kp
from keras_prune.surgery import heads as heads_lib

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _attention_model(heads=4, key_dim=3, length=5, width=8, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((length, width))
    attention = keras.layers.MultiHeadAttention(heads, key_dim, name="mha")
    return keras.Model(inputs, attention(inputs, inputs), name="attention_model")


def test_attention_layers_are_found_in_graphs_and_blocks():
    assert [layer.key for layer in heads_lib.attention_layers(tiny_lm())] == ["attn0", "attn1"]
    keras_hub = pytest.importorskip("keras_hub")
    inputs = keras.Input((4, 8))
    encoded = keras_hub.layers.TransformerEncoder(16, 2, name="enc")(inputs)
    found = heads_lib.attention_layers(keras.Model(inputs, encoded))
    assert [(layer.key, layer.holder.name) for layer in found] == [
        ("enc/self_attention_layer", "enc")
    ]


def test_head_contributions_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 4, 5))
    kernel = rng.normal(size=(4, 5, 6))
    total, count = heads_lib.head_contributions(z, kernel, chunk=4)
    expected = [
        np.mean([np.linalg.norm(z[b, t, h] @ kernel[h]) for b in range(2) for t in range(3)])
        for h in range(4)
    ]
    np.testing.assert_allclose(total / count, expected, rtol=1e-5)


def test_activation_importance_is_each_heads_output_norm():
    model = _attention_model()
    x = np.random.default_rng(1).normal(size=(6, 5, 8)).astype("float32")
    scores = kp.surgery.heads.head_importance(model, x)["mha"]
    attention = model.get_layer("mha")
    kernel, bias = (np.asarray(v) for v in attention.output_dense.weights)
    expected = []
    for head in range(4):
        alone = np.zeros_like(kernel)
        alone[head] = kernel[head]
        attention.output_dense.set_weights([alone, bias])
        contribution = keras.ops.convert_to_numpy(model(x)) - bias
        expected.append(np.linalg.norm(contribution, axis=-1).mean())
    attention.output_dense.set_weights([kernel, bias])
    np.testing.assert_allclose(scores, expected, rtol=1e-4)


def test_taylor_importance_is_the_loss_change_of_scaling_a_head():
    model = _attention_model(seed=2)
    model.compile(loss="mse")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5, 8)).astype("float32")
    y = rng.normal(size=(8, 5, 8)).astype("float32")
    scores = kp.surgery.heads.head_importance(model, (x, y), criterion="taylor", batch_size=8)[
        "mha"
    ]
    output_dense = model.get_layer("mha").output_dense
    kernel, bias = (np.asarray(v) for v in output_dense.weights)

    def loss(scale, head):
        scaled = kernel.copy()
        scaled[head] *= scale
        output_dense.set_weights([scaled, bias])
        return float(np.mean((keras.ops.convert_to_numpy(model(x)) - y) ** 2))

    epsilon = 1e-2
    expected = [abs(loss(1 + epsilon, h) - loss(1 - epsilon, h)) / (2 * epsilon) for h in range(4)]
    output_dense.set_weights([kernel, bias])
    np.testing.assert_allclose(scores, expected, rtol=2e-2)


def test_masked_heads_are_removed_exactly_by_shrink():
    model = tiny_lm()
    x, _ = token_data()
    masked = kp.surgery.heads.mask_heads(model, 0.5, x)
    scores = kp.surgery.heads.head_importance(model, x)
    for row in masked.head_report.layers:
        assert row["removed"] == sorted(np.argsort(scores[row["key"]])[:2].tolist())
    small = kp.shrink(masked)
    assert small.get_layer("attn0").num_heads == 2
    assert small.shrink_report.heads == {"attn0": (4, 2), "attn1": (4, 2)}
    assert small.count_params() < model.count_params()
    np.testing.assert_allclose(
        small.predict(x, verbose=0), masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert "Attention heads: 8 -> 4" in str(masked.head_report)


@pytest.mark.slow
def test_masked_heads_stay_removed_while_fine_tuning():
    model = tiny_lm()
    x, y = token_data(32)
    masked = kp.surgery.heads.mask_heads(model, 0.25, x, allocation="global")
    masked.compile("adam", LOSS)
    masked.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
    for row in masked.head_report.layers:
        name = row["key"]
        kernel = np.asarray(masked.get_layer(name).layer.output_dense.kernel)
        assert not np.any(kernel[row["removed"]])
    assert masked.head_report.heads_after == 6
    small = kp.shrink(masked)
    np.testing.assert_allclose(
        small.predict(x, verbose=0), masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_explicit_heads_and_bad_arguments():
    model = _attention_model()
    masked = kp.surgery.heads.mask_heads(model, heads={"mha": [1, 3]})
    assert kp.surgery.heads.zero_heads(masked.get_layer("mha").layer) == [1, 3]
    with pytest.raises(ValueError, match="either `sparsity`"):
        kp.surgery.heads.mask_heads(model)
    with pytest.raises(ValueError, match="leave at least one"):
        kp.surgery.heads.mask_heads(model, heads={"mha": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="not an attention layer"):
        kp.surgery.heads.mask_heads(model, heads={"nope": [0]})
    with pytest.raises(ValueError, match="criterion"):
        kp.surgery.heads.head_importance(model, np.zeros((2, 5, 8)), criterion="entropy")
    with pytest.raises(ValueError, match=r"calibration_data=\(x, y\)"):
        kp.surgery.heads.head_importance(model, np.zeros((2, 5, 8)), criterion="taylor")
    with pytest.raises(ValueError, match="no keras.layers.MultiHeadAttention"):
        kp.surgery.heads.head_importance(model, np.zeros((2, 5, 8)), filters="dense")


def test_heads_inside_keras_hub_blocks_are_masked_and_kept_by_shrink():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    hidden = keras_hub.layers.TransformerEncoder(32, 4, name="enc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    x = np.random.default_rng(0).normal(size=(8, 6, 16)).astype("float32")
    masked = kp.surgery.heads.mask_heads(model, heads={"enc/self_attention_layer": [0, 2]})
    # The same as zeroing the two heads' output rows by hand.
    reference = kp.graph.copy_model(model)
    output_dense = heads_lib.attention_layers(reference)[0].attention.output_dense
    kernel, bias = (np.asarray(v) for v in output_dense.weights)
    kernel[[0, 2]] = 0
    output_dense.set_weights([kernel, bias])
    np.testing.assert_allclose(masked.predict(x, verbose=0), reference.predict(x, verbose=0))
    small = kp.shrink(masked)
    assert "enc" in small.shrink_report.kept_heads
    assert "cannot express fewer heads" in str(small.shrink_report)
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "criterion, reason",
    [
        ("magnitude", "'magnitude' is a per-weight criterion of `kp.criteria`"),
        (kp.criteria.Taylor(), "is a per-weight criterion of `kp.criteria`"),
        ("activations", "Did you mean 'activation'?"),
        (None, "Received: criterion=None."),
    ],
)
def test_criterion_is_a_closed_set_of_structure_criteria(criterion, reason):
    model = _attention_model()
    x = np.zeros((2, 5, 8), "float32")
    for caller, call in (
        (
            "head_importance",
            lambda: kp.surgery.heads.head_importance(model, x, criterion=criterion),
        ),
        ("mask_heads", lambda: kp.surgery.heads.mask_heads(model, 0.25, x, criterion=criterion)),
    ):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"kp.surgery.heads.{caller}: expected `criterion` to be one of")
        assert "['activation', 'taylor']" in message and reason in message
    assert kp.surgery.heads.CRITERIA == kp.surgery.ffn.CRITERIA == ("activation", "taylor")
