"""Port of tfmot's sparsity/keras/prune_test.py (prune_low_magnitude, strip_pruning)."""

import os
import tempfile
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import build_simple_dense_model, count_pruned_layers, granularity_for

layers = keras.layers

INVALID_TO_PRUNE_PARAM_ERROR = (
    "`prune_low_magnitude` can only prune an "
    "object of the following types: "
    "keras.models.Sequential, keras "
    "functional model, keras.layers.Layer, "
    "list of keras.layers.Layer. You passed an"
    " object of type: {input}."
)


class TestSubclassedModel(keras.Model):
    """A model subclass."""

    __test__ = False  # not a pytest class

    def __init__(self):
        """A test subclass model with one dense layer."""
        super().__init__(name="test_model")
        self.layer1 = keras.layers.Dense(10, activation="relu")

    def call(self, inputs):
        return self.layer1(inputs)


class CustomPrunableLayer(layers.Dense, kp.tfmot.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel]


class CustomNonPrunableLayer(layers.Dense):
    pass


@pytest.fixture
def env():
    """tfmot's setUp: fresh layers, an empty Sequential and the pruning params."""
    return types.SimpleNamespace(
        keras_prunable_layer=layers.Dense(10),  # Supports pruning
        keras_non_prunable_layer=layers.Dropout(0.4),  # Pruning not applicable
        keras_unsupported_layer=layers.ConvLSTM2D(2, (5, 5)),  # Unsupported
        custom_prunable_layer=CustomPrunableLayer(10),
        custom_non_prunable_layer=CustomNonPrunableLayer(10),
        model=keras.Sequential(),
        params={
            "pruning_schedule": kp.tfmot.ConstantSparsity(0.5, 0),
            "block_size": (1, 1),
            "block_pooling_type": "AVG",
        },
    )


def _build_pruned_layer_model(env, layer):
    wrapped_layer = kp.tfmot.prune_low_magnitude(layer, **env.params)
    env.model.add(wrapped_layer)
    env.model.build(input_shape=(10, 1))
    return wrapped_layer


def _validate_pruned_layer(env, original_layer, wrapped_layer):
    assert isinstance(wrapped_layer, kp.PruneWrapper)
    assert original_layer == wrapped_layer.layer
    # tfmot's wrapper.pruning_schedule / block_size / block_pooling_type are keras_prune's
    # wrapper.schedule and wrapper.granularity (docs/migrating_from_tfmot.md maps block_size).
    assert env.params["pruning_schedule"] == wrapped_layer.schedule
    assert (
        granularity_for(env.params["block_size"], env.params["block_pooling_type"])
        == wrapped_layer.granularity
    )


def _validate_pruned_copy(env, original_layer, wrapped_layer):
    """`_validate_pruned_layer` for a layer of a model pruned whole: the wrapper holds a copy."""
    assert isinstance(wrapped_layer, kp.PruneWrapper)
    # deliberate difference: "`kp.prune` returns an independent copy: the model you pass is left
    # untouched, and the pruned model shares no layers or weights with it."
    # (tfmot: `assert original_layer == wrapped_layer.layer`.)
    assert wrapped_layer.layer is not original_layer
    assert type(wrapped_layer.layer) is type(original_layer)
    assert wrapped_layer.layer.get_config() == original_layer.get_config()
    assert env.params["pruning_schedule"] == wrapped_layer.schedule
    assert (
        granularity_for(env.params["block_size"], env.params["block_pooling_type"])
        == wrapped_layer.granularity
    )


def test_prune_keras_prunable_layer(env):
    wrapped_layer = _build_pruned_layer_model(env, env.keras_prunable_layer)

    _validate_pruned_layer(env, env.keras_prunable_layer, wrapped_layer)


def test_prune_keras_non_prunable_layer(env):
    wrapped_layer = _build_pruned_layer_model(env, env.keras_non_prunable_layer)

    _validate_pruned_layer(env, env.keras_non_prunable_layer, wrapped_layer)
    assert [] == wrapped_layer.prunable_weights


def test_prune_keras_unsupported_layer(env):
    # deliberate difference: "Layers tfmot refuses are pruned: ConvLSTM1D/2D/3D (kernel and
    # recurrent kernel), and custom layers built from prunable sublayers (a custom block, a
    # keras-hub transformer layer), which are pruned through those sublayers."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    wrapped_layer = kp.tfmot.prune_low_magnitude(env.keras_unsupported_layer, **env.params)
    keras.Sequential([keras.Input((3, 8, 8, 3)), wrapped_layer])

    cell = env.keras_unsupported_layer.cell
    assert [cell.kernel, cell.recurrent_kernel] == wrapped_layer.prunable_weights


def test_prune_custom_prunable_layer(env):
    wrapped_layer = _build_pruned_layer_model(env, env.custom_prunable_layer)

    _validate_pruned_layer(env, env.custom_prunable_layer, wrapped_layer)
    assert [wrapped_layer.layer.kernel] == wrapped_layer.layer.get_prunable_weights()


def test_prune_custom_non_prunable_layer(env):
    # deliberate difference: "Subclasses of built-in layers are pruned like their base class (`class
    # MyDense(keras.layers.Dense)` has its kernel pruned); tfmot refused them unless they defined
    # `get_prunable_weights()`."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    wrapped_layer = _build_pruned_layer_model(env, env.custom_non_prunable_layer)

    _validate_pruned_layer(env, env.custom_non_prunable_layer, wrapped_layer)
    assert [wrapped_layer.layer.kernel] == wrapped_layer.prunable_weights


def test_prune_model_valid_layers_successful(env):
    model = keras.Sequential(
        [env.keras_prunable_layer, env.keras_non_prunable_layer, env.custom_prunable_layer]
    )
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    pruned_model.build(input_shape=(1, 28, 28, 1))

    assert len(model.layers) == len(pruned_model.layers)
    for layer, pruned_layer in zip(model.layers, pruned_model.layers, strict=True):
        if layer is env.keras_non_prunable_layer:
            # deliberate difference: "`kp.prune` wraps only layers with something to prune; layers
            # without prunable weights (Dropout, Flatten, pooling, BatchNormalization, Add, ...)
            # stay as they are and are listed in `model.pruning_report.skipped`."
            # (tfmot wrapped the Dropout layer too.)
            assert not isinstance(pruned_layer, kp.PruneWrapper)
            assert layer.name in pruned_model.pruning_report.skipped
        else:
            _validate_pruned_copy(env, layer, pruned_layer)


def test_prune_model_unsupported_keras_layer_raises_error(env):
    # deliberate difference: "Layers tfmot refuses are pruned: ConvLSTM1D/2D/3D (kernel and
    # recurrent kernel), and custom layers built from prunable sublayers (a custom block, a
    # keras-hub transformer layer), which are pruned through those sublayers."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    pruned_model = kp.tfmot.prune_low_magnitude(
        keras.Sequential(
            [
                env.keras_prunable_layer,
                env.keras_non_prunable_layer,
                env.custom_prunable_layer,
                env.keras_unsupported_layer,
            ]
        ),
        **env.params,
    )

    assert isinstance(pruned_model.layers[3], kp.PruneWrapper)
    assert isinstance(pruned_model.layers[3].layer, layers.ConvLSTM2D)


def test_prune_model_custom_non_prunable_layer_raises_error(env):
    # deliberate difference: "Subclasses of built-in layers are pruned like their base class (`class
    # MyDense(keras.layers.Dense)` has its kernel pruned); tfmot refused them unless they defined
    # `get_prunable_weights()`."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    pruned_model = kp.tfmot.prune_low_magnitude(
        keras.Sequential(
            [
                env.keras_prunable_layer,
                env.keras_non_prunable_layer,
                env.custom_prunable_layer,
                env.custom_non_prunable_layer,
            ]
        ),
        **env.params,
    )

    assert isinstance(pruned_model.layers[3], kp.PruneWrapper)
    assert isinstance(pruned_model.layers[3].layer, CustomNonPrunableLayer)


def test_prune_model_does_not_wrap_already_wrapped_layer(env):
    model = keras.Sequential(
        [layers.Dense(10), kp.tfmot.prune_low_magnitude(layers.Dense(10), **env.params)]
    )
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    pruned_model.build(input_shape=(10, 1))

    assert len(model.layers) == len(pruned_model.layers)
    _validate_pruned_copy(env, model.layers[0], pruned_model.layers[0])
    # Second layer is used as-is since it's already a pruned layer.
    # deliberate difference: "`kp.prune` returns an independent copy: the model you pass is left
    # untouched, and the pruned model shares no layers or weights with it."
    # (tfmot: `assert model.layers[1] == pruned_model.layers[1]`: here a copy, not wrapped again.)
    assert isinstance(pruned_model.layers[1], kp.PruneWrapper)
    assert not isinstance(pruned_model.layers[1].layer, kp.PruneWrapper)
    assert pruned_model.layers[1] is not model.layers[1]
    assert model.layers[1].name in pruned_model.pruning_report.skipped


def test_prune_valid_layers_list_successful(env):
    model_layers = [
        env.keras_prunable_layer,
        env.keras_non_prunable_layer,
        env.custom_prunable_layer,
    ]
    pruned_layers = kp.tfmot.prune_low_magnitude(model_layers, **env.params)

    assert len(model_layers) == len(pruned_layers)
    for layer, pruned_layer in zip(model_layers, pruned_layers, strict=True):
        _validate_pruned_layer(env, layer, pruned_layer)


def test_prune_inference_works_pruning_step_callback_not_required(env):
    model = kp.tfmot.prune_low_magnitude(
        keras.Sequential(
            [
                layers.Dense(10, activation="relu", input_shape=(100,)),
                layers.Dense(2, activation="sigmoid"),
            ]
        ),
        **env.params,
    )

    model.compile(
        loss=keras.losses.categorical_crossentropy,
        optimizer=keras.optimizers.SGD(),
        metrics=["accuracy"],
    )

    model.predict(np.random.rand(1000, 100), verbose=0)
    model.evaluate(
        np.random.rand(1000, 100),
        keras.utils.to_categorical(np.random.randint(2, size=(1000, 1))),
        verbose=0,
    )


def test_prune_sequential_model(env):
    # No InputLayer
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert count_pruned_layers(pruned_model) == 2

    # With InputLayer
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert count_pruned_layers(pruned_model) == 2


def test_prune_sequential_model_preserves_built_state(env):
    # No InputLayer
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    assert model.built is False
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert model.built is False

    # Test built state preserves across serialization. (`model_from_config(json.loads(to_json()))`
    # is `model_from_json(to_json())` in Keras 3.)
    with kp.tfmot.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is False

    # With InputLayer
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    assert model.built is True
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert model.built is True

    with kp.tfmot.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def test_prune_functional_model(env):
    i1 = keras.Input(shape=(10,))
    i2 = keras.Input(shape=(10,))
    x1 = layers.Dense(10)(i1)
    x2 = layers.Dense(10)(i2)
    add = layers.Add()
    outputs = add([x1, x2])
    model = keras.Model(inputs=[i1, i2], outputs=outputs)
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    # deliberate difference: "`kp.prune` wraps only layers with something to prune; layers without
    # prunable weights (Dropout, Flatten, pooling, BatchNormalization, Add, ...) stay as they are
    # and are listed in `model.pruning_report.skipped`."
    # (tfmot: 3 wrappers, the Add layer's included.)
    assert count_pruned_layers(pruned_model) == 2
    assert add.name in pruned_model.pruning_report.skipped


def test_prune_functional_model_with_layer_reused(env):
    # The model reuses the Dense() layer. Make sure it's only pruned once.
    inp = keras.Input(shape=(10,))
    dense_layer = layers.Dense(10)
    x = dense_layer(inp)
    x = dense_layer(x)
    model = keras.Model(inputs=[inp], outputs=[x])
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert count_pruned_layers(pruned_model) == 1


def test_prune_functional_model_preserves_built_state(env):
    i1 = keras.Input(shape=(10,))
    i2 = keras.Input(shape=(10,))
    x1 = layers.Dense(10)(i1)
    x2 = layers.Dense(10)(i2)
    outputs = layers.Add()([x1, x2])
    model = keras.Model(inputs=[i1, i2], outputs=outputs)
    assert model.built is True
    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    assert model.built is True

    # Test built state preserves across serialization
    with kp.tfmot.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def test_prune_model_recursively(env):
    internal_model = keras.Sequential([keras.layers.Dense(10, input_shape=(10,))])
    original_model = keras.Sequential([internal_model, layers.Dense(10)])
    pruned_model = kp.tfmot.prune_low_magnitude(original_model, **env.params)
    assert count_pruned_layers(pruned_model) == 2


def test_prune_subclass_model(env):
    model = TestSubclassedModel()
    with pytest.raises(ValueError) as e:
        kp.tfmot.prune_low_magnitude(model, **env.params)
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: `str(e.value) == INVALID_TO_PRUNE_PARAM_ERROR.format(input="TestSubclassedModel")`.)
    assert "TestSubclassedModel" in str(e.value)


def test_prune_misc_object(env):
    model = object()
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: ValueError, `str(e.value) == INVALID_TO_PRUNE_PARAM_ERROR.format(input="object")`.)
    with pytest.raises(TypeError) as e:
        kp.tfmot.prune_low_magnitude(model, **env.params)
    assert "of type object" in str(e.value)


def test_strip_pruning_sequential_model(env):
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])

    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    stripped_model = kp.tfmot.strip_pruning(pruned_model)
    assert count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_strip_pruning_functional_model(env):
    i1 = keras.Input(shape=(10,))
    i2 = keras.Input(shape=(10,))
    x1 = layers.Dense(10)(i1)
    x2 = layers.Dense(10)(i2)
    outputs = layers.Add()([x1, x2])
    model = keras.Model(inputs=[i1, i2], outputs=outputs)

    pruned_model = kp.tfmot.prune_low_magnitude(model, **env.params)
    stripped_model = kp.tfmot.strip_pruning(pruned_model)

    assert count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_prune_scope_needed_for_keras_model():
    model = build_simple_dense_model()
    pruned_model = kp.tfmot.prune_low_magnitude(model)

    _, keras_model = tempfile.mkstemp(".h5")
    pruned_model.save(keras_model)

    # deliberate difference: "No scope is needed to load a pruned model: keras_prune's classes are
    # registered with Keras, and `kp.tfmot.prune_scope()` exists only so that tfmot code runs unchanged
    # (it does nothing)."
    # (tfmot: `with self.assertRaises(ValueError)` around this load.)
    keras.models.load_model(keras_model)

    # works with `prune_scope`
    with kp.tfmot.prune_scope():
        keras.models.load_model(keras_model)


def test_prune_scope_not_needed_for_keras_checkpoint():
    model = build_simple_dense_model()
    pruned_model = kp.tfmot.prune_low_magnitude(model)

    # Keras 3 weights files must end in `.weights.h5`.
    keras_weights = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    pruned_model.save_weights(keras_weights)

    same_architecture_model = build_simple_dense_model()
    same_architecture_model = kp.tfmot.prune_low_magnitude(same_architecture_model)

    # would error if `prune_scope` was needed.
    same_architecture_model.load_weights(keras_weights)


def test_prune_scope_not_needed_for_tf2_saved_model():
    model = build_simple_dense_model()
    pruned_model = kp.tfmot.prune_low_magnitude(model)

    saved_model_dir = tempfile.mkdtemp()

    tf.saved_model.save(pruned_model, saved_model_dir)

    # would error if `prune_scope` was needed.
    tf.saved_model.load(saved_model_dir)
