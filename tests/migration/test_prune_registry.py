"""Port of tfmot's sparsity/keras/prune_registry_test.py through the public API.

tfmot's `PruneRegistry` is private; what users see of it is which layers `prune_low_magnitude`
accepts and which weights it prunes. So `PruneRegistry.supports(layer)` becomes "the layer can be
wrapped and built", `make_prunable(layer)` raising becomes wrapping (and building) raising, and
`layer.get_prunable_weights()` after `make_prunable` becomes `wrapper.prunable_weights`.
"""

import keras
import pytest

import keras_prune as kp

layers = keras.layers


class CustomLayer(layers.Layer):
    pass


class CustomLayerFromPrunableLayer(layers.Dense):
    pass


class MinimalRNNCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        self.units = units
        self.state_size = units
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="uniform", name="recurrent_kernel"
        )
        self.built = True

    def call(self, inputs, states):
        prev_output = states[0]
        h = keras.ops.matmul(inputs, self.kernel)
        output = h + keras.ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]


class MinimalRNNCellPrunable(MinimalRNNCell, kp.tfmot.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel, self.recurrent_kernel]


def _wrap_and_build(layer, input_shape):
    wrapper = kp.tfmot.prune_low_magnitude(layer)
    keras.Sequential([wrapper]).build(input_shape=input_shape)
    return wrapper


DENSE_INPUT = (2, 4)
CONV_INPUT = (1, 8, 8, 3)
RNN_INPUT = (2, 3, 4)

# (id, layer factory, input shape to build it on)
SUPPORTED_LAYERS = [
    # Supports basic Keras layers even though it is not prunbale.
    ("Dense", lambda: layers.Dense(10), DENSE_INPUT),
    ("Conv2D", lambda: layers.Conv2D(10, 5), CONV_INPUT),
    ("Dropout", lambda: layers.Dropout(0.5), DENSE_INPUT),
    # Supports specific layers from experimental or compat_v1 (Keras 3: SyncBatchNormalization is
    # BatchNormalization(synchronized=True), preprocessing.Rescaling is Rescaling).
    ("SyncBatchNormalization", lambda: layers.BatchNormalization(synchronized=True), DENSE_INPUT),
    ("Rescaling", lambda: layers.Rescaling(1.0 / 255), DENSE_INPUT),
    ("BatchNormalization", lambda: layers.BatchNormalization(), DENSE_INPUT),
    # Supports Keras RNN Layers with prunable cells.
    ("LSTM", lambda: layers.LSTM(10), RNN_INPUT),
    ("GRU", lambda: layers.GRU(10), RNN_INPUT),
    ("SimpleRNN", lambda: layers.SimpleRNN(10), RNN_INPUT),
    ("RNN_LSTMCell", lambda: layers.RNN(layers.LSTMCell(10)), RNN_INPUT),
    (
        "RNN_stacked_cells",
        lambda: layers.RNN([layers.LSTMCell(10), layers.GRUCell(10), layers.SimpleRNNCell(10)]),
        RNN_INPUT,
    ),
    ("RNN_MinimalRNNCellPrunable", lambda: layers.RNN(MinimalRNNCellPrunable(32)), RNN_INPUT),
]


@pytest.mark.parametrize(
    "make_layer, input_shape",
    [case[1:] for case in SUPPORTED_LAYERS],
    ids=[case[0] for case in SUPPORTED_LAYERS],
)
def test_supports_layer(make_layer, input_shape):
    _wrap_and_build(make_layer(), input_shape)


CONV_LSTM_INPUT = (2, 3, 8, 8, 3)

UNSUPPORTED_LAYERS = [
    # Not support a few built-in keras layers.
    ("ConvLSTM2D", lambda: layers.ConvLSTM2D(2, (5, 5)), CONV_LSTM_INPUT),
    # Not support RNN layers with unknown cell
    ("RNN_MinimalRNNCell", lambda: layers.RNN(MinimalRNNCell(32)), RNN_INPUT),
    # Not support Custom layers, even though inherited from prunable layer.
    ("CustomLayer", lambda: CustomLayer(), DENSE_INPUT),
    ("CustomLayerFromPrunableLayer", lambda: CustomLayerFromPrunableLayer(10), DENSE_INPUT),
]

# The cases of UNSUPPORTED_LAYERS that keras_prune prunes, and the weights it prunes in them.
PRUNED_BY_KERAS_PRUNE = {
    # deliberate difference: "Layers tfmot refuses are pruned: ConvLSTM1D/2D/3D (kernel and
    # recurrent kernel), and custom layers built from prunable sublayers (a custom block, a
    # keras-hub transformer layer), which are pruned through those sublayers."
    "ConvLSTM2D": lambda layer: [layer.cell.kernel, layer.cell.recurrent_kernel],
    # deliberate difference: "Subclasses of built-in layers are pruned like their base class (`class
    # MyDense(keras.layers.Dense)` has its kernel pruned); tfmot refused them unless they defined
    # `get_prunable_weights()`."
    "CustomLayerFromPrunableLayer": lambda layer: [layer.kernel],
}


@pytest.mark.parametrize(
    "case_id, make_layer, input_shape", UNSUPPORTED_LAYERS, ids=[c[0] for c in UNSUPPORTED_LAYERS]
)
def test_does_not_support_layer(case_id, make_layer, input_shape):
    if case_id in PRUNED_BY_KERAS_PRUNE:
        # Deliberate difference (quoted at PRUNED_BY_KERAS_PRUNE); tfmot: `assertRaises(ValueError)`.
        layer = make_layer()
        wrapper = _wrap_and_build(layer, input_shape)
        assert PRUNED_BY_KERAS_PRUNE[case_id](layer) == wrapper.prunable_weights
        return
    with pytest.raises(ValueError):
        _wrap_and_build(make_layer(), input_shape)


def test_make_prunable_raises_error_for_keras_unsupported_layer():
    # deliberate difference: "Layers tfmot refuses are pruned: ConvLSTM1D/2D/3D (kernel and
    # recurrent kernel), and custom layers built from prunable sublayers (a custom block, a
    # keras-hub transformer layer), which are pruned through those sublayers."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    layer = layers.ConvLSTM2D(2, (5, 5))
    wrapper = _wrap_and_build(layer, CONV_LSTM_INPUT)

    assert [layer.cell.kernel, layer.cell.recurrent_kernel] == wrapper.prunable_weights


def test_make_prunable_raises_error_for_custom_layer():
    with pytest.raises(ValueError):
        kp.tfmot.prune_low_magnitude(CustomLayer())


def test_make_prunable_raises_error_for_custom_layer_inherited_from_prunable_layer():
    # deliberate difference: "Subclasses of built-in layers are pruned like their base class (`class
    # MyDense(keras.layers.Dense)` has its kernel pruned); tfmot refused them unless they defined
    # `get_prunable_weights()`."
    # (tfmot: `with self.assertRaises(ValueError)`.)
    layer = CustomLayerFromPrunableLayer(10)
    wrapper = _wrap_and_build(layer, DENSE_INPUT)

    assert [layer.kernel] == wrapper.prunable_weights


def test_make_prunable_works_on_keras_prunable_layer():
    layer = layers.Dense(10)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    # Required since build method sets up the layer weights.
    wrapper = _wrap_and_build(layer, (10, 1))

    assert [layer.kernel] == wrapper.prunable_weights


def test_make_prunable_works_on_keras_non_prunable_layer():
    layer = layers.Dropout(0.5)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    wrapper = _wrap_and_build(layer, DENSE_INPUT)

    assert [] == wrapper.prunable_weights


def test_make_prunable_works_on_keras_rnn_layer():
    layer = layers.LSTM(10)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    wrapper = _wrap_and_build(layer, (2, 3, 4))

    assert [layer.cell.kernel, layer.cell.recurrent_kernel] == wrapper.prunable_weights


def test_make_prunable_works_on_keras_rnn_layer_with_rnn_cells_params():
    cell1 = layers.LSTMCell(10)
    cell2 = layers.GRUCell(5)
    layer = layers.RNN([cell1, cell2])
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    wrapper = _wrap_and_build(layer, (2, 3, 4))

    expected_weights = [cell1.kernel, cell1.recurrent_kernel, cell2.kernel, cell2.recurrent_kernel]
    assert expected_weights == wrapper.prunable_weights


def test_make_prunable_works_on_keras_rnn_layer_with_prunable_cell():
    cell1 = layers.LSTMCell(10)
    cell2 = MinimalRNNCellPrunable(5)
    layer = layers.RNN([cell1, cell2])
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    wrapper = _wrap_and_build(layer, (2, 3, 4))

    expected_weights = [cell1.kernel, cell1.recurrent_kernel, cell2.kernel, cell2.recurrent_kernel]
    assert expected_weights == wrapper.prunable_weights


def test_make_prunable_raises_error_on_rnn_layers_unsupported_cell():
    with pytest.raises(ValueError):
        kp.tfmot.prune_low_magnitude(layers.RNN([layers.LSTMCell(10), MinimalRNNCell(5)]))
