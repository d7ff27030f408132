"""Every weight-bearing Keras layer can be wrapped, trained, and stripped to equal outputs."""

import keras
import numpy as np
import pytest

import keras_prune as kp

L = keras.layers


def seq(input_shape, *layers, dtype="float32"):
    return keras.Sequential([keras.Input(input_shape, dtype=dtype), *layers])


def mha_model():
    inputs = keras.Input((6, 8))
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    outputs = L.Dense(3)(L.GlobalAveragePooling1D()(attended))
    return keras.Model(inputs, outputs)


CASES = {
    "dense": lambda: seq((12,), L.Dense(16, name="target"), L.Dense(3)),
    "einsum_dense": lambda: seq(
        (12,), L.EinsumDense("ab,bc->ac", output_shape=16, bias_axes="c", name="target"), L.Dense(3)
    ),
    "conv1d": lambda: seq((10, 4), L.Conv1D(8, 3, name="target"), L.Flatten(), L.Dense(3)),
    "conv2d": lambda: seq((6, 6, 4), L.Conv2D(8, 3, name="target"), L.Flatten(), L.Dense(3)),
    "conv3d": lambda: seq((4, 4, 4, 4), L.Conv3D(8, 2, name="target"), L.Flatten(), L.Dense(3)),
    "conv1d_transpose": lambda: seq(
        (5, 4), L.Conv1DTranspose(8, 3, name="target"), L.Flatten(), L.Dense(3)
    ),
    "conv2d_transpose": lambda: seq(
        (4, 4, 4), L.Conv2DTranspose(8, 3, name="target"), L.Flatten(), L.Dense(3)
    ),
    "conv3d_transpose": lambda: seq(
        (3, 3, 3, 4), L.Conv3DTranspose(8, 2, name="target"), L.Flatten(), L.Dense(3)
    ),
    "depthwise_conv2d": lambda: seq(
        (6, 6, 8), L.DepthwiseConv2D(3, depth_multiplier=2, name="target"), L.Flatten(), L.Dense(3)
    ),
    "depthwise_conv1d": lambda: seq(
        (10, 8), L.DepthwiseConv1D(3, name="target"), L.Flatten(), L.Dense(3)
    ),
    "separable_conv1d": lambda: seq(
        (10, 4), L.SeparableConv1D(8, 3, name="target"), L.Flatten(), L.Dense(3)
    ),
    "separable_conv2d": lambda: seq(
        (6, 6, 4), L.SeparableConv2D(8, 3, name="target"), L.Flatten(), L.Dense(3)
    ),
    "embedding": lambda: seq(
        (5,), L.Embedding(20, 8, name="target"), L.Flatten(), L.Dense(3), dtype="int32"
    ),
    "simple_rnn": lambda: seq((5, 4), L.SimpleRNN(8, name="target"), L.Dense(3)),
    "gru": lambda: seq((5, 4), L.GRU(8, name="target"), L.Dense(3)),
    "lstm": lambda: seq((5, 4), L.LSTM(8, name="target"), L.Dense(3)),
    "bidirectional_lstm": lambda: seq(
        (5, 4), L.Bidirectional(L.LSTM(8), name="target"), L.Dense(3)
    ),
    "multi_head_attention": mha_model,
}

TARGET = {"multi_head_attention": "mha"}


def inputs_for(model, rng):
    spec = model.inputs[0]
    shape = (16, *spec.shape[1:])
    if "int" in str(spec.dtype):
        return rng.integers(0, 20, shape).astype("int32")
    return rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_is_pruned_trained_and_stripped(case):
    keras.utils.set_random_seed(0)
    model = CASES[case]()
    rng = np.random.default_rng(0)
    x, y = inputs_for(model, rng), rng.normal(size=(16, 3)).astype("float32")
    target_name = TARGET.get(case, "target")
    pruned = kp.prune(
        model,
        schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1),
        filters=lambda layer: layer.name == target_name,
        allocation="per_layer",
    )
    assert pruned.pruning_report.wrapped == [target_name]
    wrapper = pruned.get_layer(target_name)
    assert isinstance(wrapper, kp.PruneWrapper)
    # Drop-in: before any mask update the outputs equal the original model's.
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
    for variable in wrapper.prunable_weights:
        values = np.asarray(variable)
        zeros = np.count_nonzero(values == 0)
        assert zeros == values.size - kp.masks.keep_count(values.size, 0.5), variable.path
    plain = kp.strip(pruned)
    assert not kp.layers.find_wrappers(plain)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_biases_are_not_pruned():
    keras.utils.set_random_seed(1)
    model = seq((12,), L.Dense(16, bias_initializer="ones", name="target"), L.Dense(3))
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.9, 0, frequency=1))
    kp.pruning.update_masks(pruned, 0)
    np.testing.assert_array_equal(np.asarray(pruned.get_layer("target").layer.bias), np.ones(16))


@keras.saving.register_keras_serializable(package="tests")
class Scale(L.Layer):
    """A custom layer that opts in with get_prunable_weights()."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 6), initializer="glorot_uniform")
        self.offset = self.add_weight(shape=(6,), initializer="ones")

    def call(self, x):
        return x @ self.kernel + self.offset

    def get_prunable_weights(self):
        return [self.kernel]


@keras.saving.register_keras_serializable(package="tests")
class NotAVariable(Scale):
    def get_prunable_weights(self):
        return [np.zeros((2, 2))]


def test_custom_layer_protocol():
    model = seq((5,), Scale(name="custom"), L.Dense(2))
    pruned = kp.prune(
        model, schedule=kp.ConstantSparsity(0.8, 0, frequency=1), allocation="per_layer"
    )
    assert sorted(pruned.pruning_report.wrapped) == sorted(["custom", model.layers[-1].name])
    kp.pruning.update_masks(pruned, 0)
    kernel = np.asarray(pruned.get_layer("custom").layer.kernel)
    assert np.count_nonzero(kernel) == kp.masks.keep_count(30, 0.8)
    np.testing.assert_array_equal(np.asarray(pruned.get_layer("custom").layer.offset), np.ones(6))


def test_custom_layer_returning_non_variables_is_refused():
    model = seq((5,), NotAVariable(name="bad"), L.Dense(2))
    with pytest.raises(TypeError, match="must return Keras variables"):
        kp.prune(model, filters="bad")


def test_layers_without_weights_pass_through():
    model = seq(
        (6, 6, 2),
        L.Conv2D(4, 3, name="conv"),
        L.MaxPooling2D(),
        L.BatchNormalization(),
        L.Flatten(),
        L.Dense(2),
    )
    pruned = kp.prune(model)
    report = pruned.pruning_report
    assert sorted(report.wrapped) == sorted(["conv", model.layers[-1].name])
    assert report.skipped[model.layers[1].name] == "no prunable weights"
    assert not isinstance(pruned.layers[2], kp.PruneWrapper)


def test_masking_passes_through_wrappers():
    keras.utils.set_random_seed(2)
    model = seq(
        (6,),
        L.Embedding(12, 4, mask_zero=True, name="embed"),
        L.LSTM(5, name="lstm"),
        L.Dense(2),
        dtype="int32",
    )
    tokens = np.array([[3, 4, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0]], "int32")
    longer_padding = np.array([[3, 4, 0, 0, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0, 0, 0]], "int32")[:, :6]
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0, frequency=1))
    expected = model.predict(tokens, verbose=0)
    np.testing.assert_allclose(pruned.predict(tokens, verbose=0), expected, atol=1e-6)
    # Masked (padding) steps are skipped by the LSTM inside the wrapper: zeroing the embedding
    # of token 0 would change nothing, which only holds if the mask reached the LSTM.
    embed = pruned.get_layer("embed").layer
    embed.embeddings.assign(
        np.concatenate([np.full((1, 4), 5.0), np.asarray(embed.embeddings)[1:]])
    )
    np.testing.assert_allclose(pruned.predict(longer_padding, verbose=0), expected, atol=1e-6)
    kp.pruning.update_masks(pruned, 0)
    plain = kp.strip(pruned)
    np.testing.assert_allclose(
        plain.predict(tokens, verbose=0), pruned.predict(tokens, verbose=0), atol=1e-6
    )
