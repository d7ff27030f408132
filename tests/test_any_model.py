"""`kp.prune` on the models Keras users bring: operators, keywords, nested, keras-hub, subclassed,
unbuilt Sequential models, lists of layers, composite layers; and the report of what was left."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_prune as kp
from keras_prune.layers import layouts

EVERY_STEP = kp.ConstantSparsity(0.5, begin_step=0, frequency=1)


def train_a_little(model, x, epochs=1):
    outputs = keras.tree.flatten(model(x))
    targets = [np.zeros(tuple(o.shape), "float32") for o in outputs]
    model.compile("sgd", "mse")
    model.fit(
        x,
        targets if len(targets) > 1 else targets[0],
        epochs=epochs,
        batch_size=4,
        verbose=0,
        callbacks=[kp.PruningCallback()],
    )


def outputs(model, x):
    return [keras.ops.convert_to_numpy(v) for v in keras.tree.flatten(model(x))]


def assert_same(first, second, x):
    for a, b in zip(outputs(first, x), outputs(second, x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def prune_train_strip(model, x, tmp_path):
    pruned = kp.prune(model, schedule=EVERY_STEP)
    train_a_little(pruned, x)
    sparsity = kp.engine.realised_sparsity(kp.layers.find_wrappers(pruned))
    assert sparsity == pytest.approx(0.5, abs=0.02)
    plain = kp.strip(pruned)
    assert not kp.layers.find_wrappers(plain)
    assert_same(pruned, plain, x)
    pruned.save(tmp_path / "pruned.keras")
    assert_same(pruned, keras.saving.load_model(tmp_path / "pruned.keras"), x)
    plain.save(tmp_path / "plain.keras")
    assert_same(plain, keras.saving.load_model(tmp_path / "plain.keras"), x)
    return pruned, plain


def test_functional_model_with_operators(tmp_path):
    inputs = keras.Input((8,))
    hidden = layers.Dense(8)(inputs)
    model = keras.Model(inputs, layers.Dense(8)(hidden) + hidden * 0.5)
    x = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    prune_train_strip(model, x, tmp_path)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # the user's model is untouched


def test_embedding_with_mask_zero_and_lstm(tmp_path):
    inputs = keras.Input((6,), dtype="int32")
    embedded = layers.Embedding(20, 8, mask_zero=True)(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.LSTM(4)(embedded)))
    x = np.random.default_rng(0).integers(0, 20, (8, 6)).astype("int32")
    pruned, _ = prune_train_strip(model, x, tmp_path)
    assert len(pruned.pruning_report.wrapped) == 3


def test_multi_head_attention_called_with_keywords(tmp_path):
    inputs = keras.Input((5, 8))
    attended = layers.MultiHeadAttention(2, 4)(query=inputs, value=inputs, use_causal_mask=True)
    model = keras.Model(inputs, layers.LayerNormalization()(inputs + attended))
    x = np.random.default_rng(0).random((8, 5, 8), dtype=np.float32)
    pruned, _ = prune_train_strip(model, x, tmp_path)
    assert "multi_head_attention" in pruned.pruning_report.wrapped[0]


def test_nested_and_shared_layers(tmp_path):
    inner_inputs = keras.Input((8,))
    inner = keras.Model(inner_inputs, layers.Dense(8, name="inner_dense")(inner_inputs))
    shared = layers.Dense(4, name="shared")
    first, second = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([first, second], [shared(inner(first)), shared(second)])
    rng = np.random.default_rng(0)
    x = [rng.random((8, 8), dtype=np.float32), rng.random((8, 8), dtype=np.float32)]
    pruned, _ = prune_train_strip(model, x, tmp_path)
    assert sorted(pruned.pruning_report.wrapped) == ["inner_dense", "shared"]


def test_composite_and_wrapper_layers_are_pruned_through_their_sublayers(tmp_path):
    @keras.saving.register_keras_serializable(package="test_any_model")
    class TwoDense(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.up = layers.Dense(16)
            self.down = layers.Dense(4)

        def call(self, x):
            return self.down(keras.ops.relu(self.up(x)))

    inputs = keras.Input((3, 4))
    x = layers.TimeDistributed(layers.Dense(4))(inputs)
    model = keras.Model(inputs, TwoDense(name="two_dense")(x))
    data = np.random.default_rng(0).random((8, 3, 4), dtype=np.float32)
    pruned, _ = prune_train_strip(model, data, tmp_path)
    report = pruned.pruning_report
    assert sorted(report.wrapped) == ["time_distributed", "two_dense"]
    biases = {p: r for p, r in report.left_alone.items() if p.endswith("bias")}
    assert len(biases) == 3 and set(biases.values()) == {layouts.BIAS}
    targets = [w.name for wrapper in kp.layers.find_wrappers(pruned) for w in wrapper.targets]
    assert len(targets) == 3


def test_report_names_weights_of_layers_it_does_not_know():
    @keras.saving.register_keras_serializable(package="test_any_model")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(Scale(name="scale")(inputs)))
    report = kp.prune(model).pruning_report
    assert "get_prunable_weights" in report.skipped["scale"]
    assert [r for p, r in report.left_alone.items() if p.startswith("scale/")] == [layouts.UNKNOWN]
    assert "get_prunable_weights" in str(report)


def test_unbuilt_sequential_and_input_shape_on_a_wrapped_first_layer():
    unbuilt = keras.Sequential([layers.Dense(10), layers.Dense(2)])
    pruned = kp.prune(unbuilt, schedule=EVERY_STEP)
    assert not pruned.built
    train_a_little(pruned, np.random.default_rng(0).random((8, 20), dtype=np.float32))
    assert kp.engine.realised_sparsity(kp.layers.find_wrappers(pruned)) == pytest.approx(0.5)
    declared = keras.Sequential(
        [kp.tfmot.prune_low_magnitude(layers.Dense(10, input_shape=(20,))), layers.Dense(2)]
    )
    assert declared.built
    assert tuple(declared.inputs[0].shape) == (None, 20)


def test_a_layer_or_a_list_of_layers_is_wrapped():
    wrapped = kp.prune([layers.Dense(3), layers.Conv2D(2, 3)])
    assert [type(layer).__name__ for layer in wrapped] == ["PruneWrapper", "PruneWrapper"]
    assert isinstance(kp.tfmot.prune_low_magnitude(layers.Dense(3)), kp.PruneWrapper)


def test_generic_rnn_and_conv_lstm_are_prunable():
    rnn = keras.Sequential(
        [keras.Input((5, 3)), layers.RNN(layers.LSTMCell(4), name="rnn"), layers.Dense(2)]
    )
    assert "rnn" in kp.prune(rnn).pruning_report.wrapped
    conv_lstm = keras.Sequential(
        [
            keras.Input((3, 8, 8, 2)),
            layers.ConvLSTM2D(4, 3, name="conv_lstm2d"),
            layers.Flatten(),
            layers.Dense(2),
        ]
    )
    assert "conv_lstm2d" in kp.prune(conv_lstm).pruning_report.wrapped


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(16)
        self.out = layers.Dense(2)

    def call(self, x):
        return self.out(keras.ops.relu(self.hidden(x)))


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="in-place pruning needs constraints")
def test_subclassed_model_is_pruned_in_place_and_stripped():
    model = Subclassed()
    x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    model(x)
    pruned = kp.prune(model, schedule=EVERY_STEP, allocation="per_layer")
    assert pruned is model and pruned.pruning_report.in_place
    train_a_little(pruned, x, epochs=2)
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in (model.hidden, model.out)]
    for kernel in kernels:
        assert np.mean(kernel == 0) == pytest.approx(0.5)
    before = outputs(model, x)
    plain = kp.strip(model)
    assert not kp.layers.find_wrappers(plain)
    np.testing.assert_allclose(outputs(plain, x)[0], before[0], atol=1e-6)
    with pytest.raises(ValueError, match="subclassed"):
        kp.prune(model, granularity="channel")


def test_wrappers_placed_inside_a_subclassed_model_strip_and_export():
    class WithWrapper(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = kp.PruneWrapper(layers.Dense(8), schedule=EVERY_STEP)
            self.out = layers.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    model = WithWrapper()
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    model(x)
    train_a_little(model, x)
    before = outputs(model, x)
    plain = kp.strip(model)
    np.testing.assert_allclose(outputs(plain, x)[0], before[0], atol=1e-6)
    assert all(wrapper.pass_through for wrapper in kp.layers.find_wrappers(plain))


def test_bad_input_names_the_value_and_leaves_the_model_alone():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"filters='\['"):
        kp.prune(model, filters="[")
    with pytest.raises(TypeError, match="Received: model=3"):
        kp.prune(3)
    with pytest.raises(ValueError, match="granularity"):
        kp.prune(model, granularity="diagonal")
    with pytest.raises(TypeError, match="step"):
        kp.pruning.update_masks(kp.prune(model), "abc")
    for old, new in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
