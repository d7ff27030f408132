"""Feed-forward neurons: importance against NumPy, masking, and exact removal by kp.shrink, in
Functional transformers and inside keras-hub blocks."""

import keras
import numpy as np
import pytest
from language_models import tiny_lm, token_data

import keras_prune as kp


def test_feed_forward_pairs_are_found():
    assert [ffn.key for ffn in kp.surgery.ffn.feed_forwards(tiny_lm())] == ["ffn_in0", "ffn_in1"]
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="sigmoid", name="gate")(inputs)
    hidden = keras.layers.Dense(6, name="middle")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    skipped = {}
    assert [f.key for f in kp.surgery.ffn.feed_forwards(model, skipped)] == ["middle"]
    assert "does not map 0 to 0" in skipped["gate"]


def test_activation_importance_is_activation_norm_times_output_norm():
    model = tiny_lm()
    x, _ = token_data(16)
    scores = kp.surgery.ffn.neuron_importance(model, x)["ffn_in0"]
    probe = keras.Model(model.input, model.get_layer("ffn_in0").output)
    activations = probe.predict(x, verbose=0).reshape(-1, 32)
    rows = np.asarray(model.get_layer("ffn_out0").kernel)
    expected = np.sqrt((activations**2).mean(0)) * np.linalg.norm(rows, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4)


@pytest.mark.slow
def test_masked_neurons_are_removed_exactly_by_shrink():
    model = tiny_lm()
    x, y = token_data(32)
    masked = kp.surgery.ffn.mask_neurons(model, 0.5, x)
    masked.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    masked.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
    small = kp.shrink(masked)
    assert small.get_layer("ffn_in0").units == 16
    assert small.get_layer("ffn_out1").kernel.shape[0] == 16
    np.testing.assert_allclose(
        small.predict(x, verbose=0), masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert "Feed-forward neurons: 64 -> 32" in str(masked.neuron_report)


def test_heads_and_neurons_compose():
    model = tiny_lm()
    x, _ = token_data(16)
    masked = kp.surgery.ffn.mask_neurons(kp.surgery.heads.mask_heads(model, 0.5, x), 0.25, x)
    small = kp.shrink(masked)
    assert small.get_layer("attn1").num_heads == 2 and small.get_layer("ffn_in1").units == 24
    np.testing.assert_allclose(
        small.predict(x, verbose=0), masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_keras_hub_block_neurons_are_removed_exactly():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    hidden = keras_hub.layers.TransformerEncoder(32, 2, name="enc0")(inputs)
    hidden = keras_hub.layers.TransformerEncoder(32, 2, name="enc1", normalize_first=True)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    x = np.random.default_rng(0).normal(size=(8, 6, 16)).astype("float32")
    masked = kp.surgery.ffn.mask_neurons(model, 0.5, x)
    small = kp.shrink(masked)
    assert small.get_layer("enc0").intermediate_dim == 16
    assert small.shrink_report.feed_forward == {"enc0": (32, 16), "enc1": (32, 16)}
    np.testing.assert_allclose(
        small.predict(x, verbose=0), masked.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_taylor_and_bad_arguments():
    model = tiny_lm()
    x, y = token_data(16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    scores = kp.surgery.ffn.neuron_importance(model, (x, y), criterion="taylor", loss=loss)
    assert scores["ffn_in1"].shape == (32,) and np.all(scores["ffn_in1"] >= 0)
    masked = kp.surgery.ffn.mask_neurons(model, neurons={"ffn_in0": [0, 5]})
    wrapper = {w.name: w for w in kp.layers.find_wrappers(masked)}["ffn_in0"]
    assert np.flatnonzero(np.asarray(wrapper.bias_masks[0]) == 0).tolist() == [0, 5]
    with pytest.raises(ValueError, match="either `sparsity`"):
        kp.surgery.ffn.mask_neurons(model, 0.5, x, neurons={"ffn_in0": [1]})
    with pytest.raises(ValueError, match="not a feed-forward"):
        kp.surgery.ffn.mask_neurons(model, neurons={"logits": [1]})
    with pytest.raises(ValueError, match="needs a loss"):
        kp.surgery.ffn.neuron_importance(model, (x, y), criterion="taylor")


def test_criterion_names_outside_the_structure_criteria_are_refused():
    model = tiny_lm()
    x, _ = token_data(4)
    for caller, call in (
        ("neuron_importance", lambda: kp.surgery.ffn.neuron_importance(model, x, criterion="l2")),
        ("mask_neurons", lambda: kp.surgery.ffn.mask_neurons(model, 0.5, x, criterion="l2")),
    ):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"kp.surgery.ffn.{caller}: expected `criterion` to be one of")
        assert "['activation', 'taylor']" in message and "Received: criterion='l2'." in message
        assert "a neuron is ranked as a whole" in message
