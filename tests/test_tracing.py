"""Graph tracing and rewiring through public Keras (keras_prune.graph.tracing / rewire)."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_prune.graph import rewire, tracing


def residual_with_operators():
    inputs = keras.Input((8,))
    hidden = layers.Dense(8, name="first")(inputs)
    outputs = layers.Dense(8, name="second")(hidden) + hidden
    return keras.Model(inputs, outputs)


def test_trace_sees_operation_nodes_in_run_order():
    graph = tracing.trace(residual_with_operators())
    assert [call.name for call in graph.calls][:2] == ["first", "second"]
    assert [type(call.operation).__name__ for call in graph.calls] == ["Dense", "Dense", "Add"]
    assert not graph.calls[2].is_layer
    add = graph.calls[2]
    assert [graph.producer(tensor).name for tensor in add.inputs] == ["second", "first"]
    assert graph.producer(graph.inputs[0]) is None
    assert graph.outputs == add.outputs


def test_trace_keeps_keyword_arguments():
    inputs = keras.Input((5, 4))
    attention = layers.MultiHeadAttention(2, 4, name="attention")
    outputs = attention(query=inputs, value=inputs, use_causal_mask=True)
    call = tracing.trace(keras.Model(inputs, outputs)).calls[0]
    assert call.args == ()
    assert set(call.kwargs) >= {"query", "value", "use_causal_mask"}
    assert call.kwargs["use_causal_mask"] is True
    assert len(call.inputs) == 2


def test_trace_inlines_nested_sequential_and_functional_models():
    inner_sequential = keras.Sequential(
        [keras.Input((8,)), layers.Dense(4, name="s_dense"), layers.ReLU(name="s_relu")]
    )
    inner_inputs = keras.Input((4,))
    inner_functional = keras.Model(inner_inputs, layers.Dense(3, name="f_dense")(inner_inputs))
    inputs = keras.Input((8,))
    hidden = inner_sequential(inputs)
    model = keras.Model(inputs, [inner_functional(hidden), hidden])
    graph = tracing.trace(model)
    assert [call.name for call in graph.calls] == ["s_dense", "s_relu", "f_dense"]
    assert len(graph.outputs) == 2
    assert graph.producer(graph.outputs[1]).name == "s_relu"


def test_trace_of_sequential_and_caching():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(4), layers.Dense(2)])
    first = tracing.trace(model)
    assert [call.name for call in first.calls] == [layer.name for layer in model.layers]
    assert tracing.trace(model) is first


def test_subclassed_and_unbuilt_models_are_not_traceable():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.ones((1, 3), "float32"))
    with pytest.raises(tracing.NotTraceable, match="subclassed"):
        tracing.trace(model)
    with pytest.raises(tracing.NotTraceable, match="not built"):
        tracing.trace(keras.Sequential([layers.Dense(2)]))
    with pytest.raises(TypeError, match="keras.Model"):
        tracing.trace(layers.Dense(2))


def test_copy_model_is_independent_with_equal_outputs():
    model = residual_with_operators()
    copy = rewire.copy_model(model)
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    np.testing.assert_array_equal(*map(keras.ops.convert_to_numpy, (model(x), copy(x))))
    copy.weights[0].assign(np.zeros(copy.weights[0].shape))
    assert np.any(keras.ops.convert_to_numpy(model.weights[0]) != 0)


def test_replace_layers_swaps_layers_and_keeps_operations():
    model = residual_with_operators()
    replaced = []

    def replace(layer):
        replaced.append(layer.name)
        return layer

    rewired = rewire.replace_layers(model, replace)
    assert sorted(replaced) == ["first", "second"]
    x = np.ones((2, 8), "float32")
    np.testing.assert_array_equal(*map(keras.ops.convert_to_numpy, (model(x), rewired(x))))
