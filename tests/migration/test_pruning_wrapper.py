"""Port of tfmot's sparsity/keras/pruning_wrapper_test.py.

tfmot's `PruneLowMagnitude` class is not in its public API; users get it from
`prune_low_magnitude(layer)`, so that is what these tests call (`Prune(layer, ...)` in tfmot).
"""

import keras
import pytest
from keras import ops

import keras_prune as kp

from .helpers import collect_prunable_layers, pruning_vars

layers = keras.layers
Prune = kp.tfmot.prune_low_magnitude


class CustomLayer(keras.layers.Layer):
    """A custom layer which is not prunable."""

    def __init__(self, input_dim=16, output_dim=32):
        super().__init__()
        self.weight = self.add_weight(
            shape=(input_dim, output_dim), initializer="random_normal", trainable=True
        )
        self.bias = self.add_weight(shape=(output_dim,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return ops.matmul(inputs, self.weight) + self.bias


class CustomLayerPrunable(CustomLayer):
    """A prunable custom layer.

    The layer is same with the CustomLayer except it has a 'get_prunable_weights'
    attribute.
    """

    def get_prunable_weights(self):
        return [self.weight, self.bias]


PARAMS = {
    "pruning_schedule": kp.tfmot.ConstantSparsity(0.5, 0),
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
}


@pytest.fixture
def model():
    return keras.Sequential()


def _check_mask_count(model, expected_mask_count=0):
    mask_count = 0
    for layer in model.layers:
        mask_count += len(pruning_vars(layer))
    assert mask_count == expected_mask_count


def test_prune_wrapper_allows_only_valid_pooling_type():
    layer = layers.Dense(10)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MIN")

    Prune(layer, block_pooling_type="AVG")
    Prune(layer, block_pooling_type="MAX")


def test_dense(model):
    model.add(Prune(layers.Dense(10), **PARAMS))
    model.build(input_shape=(10, 1))

    _check_mask_count(model, expected_mask_count=1)


def test_embedding(model):
    model.add(Prune(layers.Embedding(10, 10), input_shape=(10,), **PARAMS))
    # tfmot then called `model.build(input_shape=(10, 1))`; Keras 3 refuses to rebuild a
    # Sequential whose first layer gave it an input shape, and `input_shape=` built it already.

    _check_mask_count(model, expected_mask_count=1)


def test_conv2d(model):
    model.add(Prune(layers.Conv2D(4, (3, 3)), **PARAMS))
    model.build(input_shape=(1, 16, 16, 4))

    _check_mask_count(model, expected_mask_count=1)


def test_prune_model(model):
    model.add(Prune(layers.Conv2D(32, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Conv2D(64, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(1024)))
    model.add(Prune(layers.Dropout(0.4)))
    model.add(Prune(layers.Dense(10)))
    model.build(input_shape=(1, 28, 28, 1))

    _check_mask_count(model, expected_mask_count=4)

    # Test serialization
    model_config = model.get_config()
    pruned_model = model.__class__.from_config(
        model_config, custom_objects={"PruneWrapper": kp.PruneWrapper}
    )
    pruned_model_config = pruned_model.get_config()
    # New serialization format includes `build_config` in all layers
    for layer in model_config["layers"]:
        layer.pop("build_config", None)
    for layer in pruned_model_config["layers"]:
        layer.pop("build_config", None)
    assert model_config == pruned_model_config


def test_custom_layer_non_prunable():
    layer = CustomLayer(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MAX")


def test_custom_layer_prunable():
    layer = CustomLayerPrunable(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    pruned_layer = Prune(layer, block_pooling_type="MAX")
    # deliberate difference: "Wrapped layers keep their names (tfmot renames them
    # `prune_low_magnitude_<name>`)."
    assert pruned_layer.name == "custom_layer_prunable"


def test_collect_prunable_layers(model):
    lstm_layer = keras.layers.RNN(
        layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5), input_shape=(None, 4)
    )
    model.add(Prune(lstm_layer))
    model.add(Prune(layers.BatchNormalization()))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(10)))
    model.add(Prune(layers.Dropout(0.5)))

    # tfmot then called `model.build(input_shape=(1, 4))`; Keras 3 refuses to rebuild a
    # Sequential whose first layer gave it an input shape, and `input_shape=` built it already.
    assert model.built

    assert len(collect_prunable_layers(model)) == 5


def test_conv3d_weight_not_pruned_with_sparsity_m_by_n(model):
    layer = keras.layers.Conv3D(2, 3)
    # tfmot: Input(shape=(4, 28, 28, 28, 1)); Keras 3's Conv3D wants exactly one batch axis.
    inputs = keras.layers.Input(shape=(28, 28, 28, 1), batch_size=4)
    _ = layer(inputs)
    model.add(Prune(layer, sparsity_m_by_n=(2, 4)))
    # Not in tfmot's test, whose wrapper was never built (so its `pruning_vars` was empty
    # whatever the rank): build it, so that the assertion below is about the Conv3D kernel.
    model.build(input_shape=(4, 28, 28, 28, 1))

    pruned_layers = collect_prunable_layers(model)

    assert len(pruned_layers) == 1
    # Only rank-2 (e.g, Conv2D) or rank-4 (e.g, Dense) weight are pruned with
    # M-by-N sparsity.
    # deliberate difference: "N:M (`sparsity_m_by_n`) and blocks (`block_size`) apply to every
    # weight with an input-channel axis, Conv1D and Conv3D kernels included; a weight without one (a
    # depthwise kernel, a 1-D weight) is left unpruned with the reason in `wrapper.left_alone` and
    # `model.pruning_report.left_alone` rather than refused."
    # (tfmot: `assertLen(pruned_layers[0].pruning_vars, 0)`.)
    assert [weight for weight, _ in pruning_vars(pruned_layers[0])] == [layer.kernel]
