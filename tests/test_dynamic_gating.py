"""ChannelGate: top-k per input, regularized, serializable; its statistics prune statically."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp

layers = keras.layers


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def gated_cnn(keep=0.5, strength=1e-4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = kp.dynamic.ChannelGate(keep, regularizer=kp.regularizers.L1(strength), name="gate1")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="gated")


def test_gate_keeps_top_k_channels_per_input():
    gate = kp.dynamic.ChannelGate(keep=0.25)
    x = np.random.default_rng(0).random((5, 4, 4, 8)).astype("float32")
    out = numpy(gate(x))
    active = (np.abs(out).sum(axis=(1, 2)) > 0).sum(axis=1)
    assert np.all(active <= 2) and np.all(active >= 1)
    scores = numpy(gate.saliency(x))
    expected = x * scores[:, None, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.slow  # a variant of a fast training test; CI runs it
def test_regularizer_adds_a_loss_and_training_works(digits):
    (x, y), (x_test, y_test) = digits
    model = gated_cnn()
    model(x[:4])
    assert model.losses  # the L1 activity penalty on the saliencies
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    accuracy = np.mean(np.argmax(numpy(model(x_test)), 1) == y_test)
    assert accuracy > 0.6
    scores = kp.dynamic.gate_channel_scores(model, x[:256])
    assert set(scores) == {"gate1"}
    assert scores["gate1"]["active"] == pytest.approx(0.5)
    assert scores["gate1"]["scores"].shape == (16,)


def test_gate_statistics_drive_static_pruning(digits):
    (x, y), _ = digits
    model = gated_cnn()
    model(x[:4])
    assert model.losses  # the L1 activity penalty on the saliencies
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:512], y[:512], epochs=1, batch_size=64, verbose=0)
    scores = kp.dynamic.gate_channel_scores(model, x[:256])
    plain = kp.dynamic.remove_gates(model)
    assert not any(isinstance(layer, kp.dynamic.ChannelGate) for layer in plain.layers)
    np.testing.assert_array_equal(
        numpy(plain.get_layer("conv1").kernel), numpy(model.get_layer("conv1").kernel)
    )
    removed = kp.dynamic.prune_by_gate_scores(plain, scores, 0.5)
    (dropped,) = removed.values()
    assert len(dropped) == 8
    assert set(dropped) == set(np.argsort(scores["gate1"]["scores"], kind="stable")[:8])
    small = kp.shrink(plain)
    assert small.get_layer("conv1").kernel.shape[-1] == 8


def test_gate_round_trips_and_validates(tmp_path):
    gate = kp.dynamic.ChannelGate(keep=0.75, regularizer=kp.regularizers.L1(1e-3), name="g")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(gate)))
    restored = keras.saving.deserialize_keras_object(config)
    assert restored.keep == 0.75 and restored.regularizer.strength == 1e-3
    model = gated_cnn()
    x = np.random.default_rng(1).random((3, 8, 8, 1)).astype("float32")
    path = str(tmp_path / "gated.keras")
    model.save(path)
    np.testing.assert_allclose(numpy(keras.saving.load_model(path)(x)), numpy(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="keep"):
        kp.dynamic.ChannelGate(keep=0.0)
    with pytest.raises(ValueError, match="no ChannelGate"):
        kp.dynamic.gate_channel_scores(
            keras.Sequential([keras.Input((2,)), layers.Dense(2)]), np.ones((2, 2))
        )
