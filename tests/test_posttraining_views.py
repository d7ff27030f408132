"""The pieces under kp.posttraining.prune_posttraining: matrix views of weights (Dense, EinsumDense, convs as
im2col), input statistics, calibration batches, the call-by-call graph run, input recording."""

import keras
import numpy as np
import pytest

from keras_prune.graph import tracing
from keras_prune.layers import layouts
from keras_prune.posttraining.calibration import calibration_batches
from keras_prune.posttraining.capture import recording_inputs
from keras_prune.posttraining.input_statistics import InputStatistics
from keras_prune.posttraining.matrix_view import matrix_view
from keras_prune.posttraining.replay import GraphRun, run_graph

RNG = np.random.default_rng(0)


def _check_view(layer, x):
    outputs = keras.ops.convert_to_numpy(layer(x))
    (weight,) = [w for w in layouts.prunable_weights(layer) if w.owner is layer]
    view, reason = matrix_view(weight)
    assert reason is None
    kernel = np.asarray(weight.variable)
    np.testing.assert_array_equal(view.kernel(view.matrix(kernel)), kernel)
    product = view.rows(x) @ view.matrix(kernel).T
    np.testing.assert_allclose(product.reshape(outputs.shape), outputs, rtol=1e-4, atol=1e-4)
    return view


@pytest.mark.parametrize(
    "layer, shape",
    [
        (keras.layers.Dense(5, use_bias=False), (3, 4, 6)),
        (keras.layers.EinsumDense("abc,cde->abde", (4, 2, 3)), (2, 4, 6)),
        (keras.layers.EinsumDense("abcd,cde->abe", (4, 5)), (2, 4, 2, 3)),
        (keras.layers.EinsumDense("...b,bc->...c", 7), (2, 3, 4, 5)),
        (keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2, use_bias=False), (2, 9, 3)),
        (keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False), (2, 7, 8, 3)),
        (keras.layers.Conv2D(4, (2, 3), dilation_rate=2, use_bias=False), (2, 8, 9, 2)),
        (keras.layers.Conv3D(2, 2, padding="same", use_bias=False), (1, 4, 5, 3, 2)),
    ],
    ids=["dense", "query", "attention_output", "ellipsis", "conv1d", "conv2d", "dilated", "3d"],
)
def test_matrix_view_reproduces_the_layer(layer, shape):
    x = RNG.normal(size=shape).astype("float32")
    _check_view(layer, x)


def test_view_input_channels_are_the_fastest_columns():
    conv = keras.layers.Conv2D(4, 3, use_bias=False)
    view = _check_view(conv, RNG.normal(size=(1, 5, 5, 8)).astype("float32"))
    assert view.input_channels == 8
    attention_output = keras.layers.EinsumDense("abcd,cde->abe", (4, 5))
    view = _check_view(attention_output, RNG.normal(size=(1, 4, 2, 8)).astype("float32"))
    assert view.input_channels == 8 and view.inputs == 16


def test_layers_without_a_matrix_view_name_the_reason():
    embedding = keras.layers.Embedding(10, 4)
    embedding.build((None, 3))
    view, reason = matrix_view(layouts.prunable_weights(embedding)[0])
    assert view is None and "not a matrix product" in reason
    depthwise = keras.layers.DepthwiseConv2D(3)
    depthwise.build((None, 5, 5, 2))
    assert matrix_view(layouts.prunable_weights(depthwise)[0])[0] is None


def test_input_statistics_sum_the_gram_matrix_and_norms():
    rows = RNG.normal(size=(50, 4))
    full, diagonal = InputStatistics(4), InputStatistics(4, full=False)
    for part in np.split(rows, 5):
        full.update(part)
        diagonal.update(part)
    np.testing.assert_allclose(full.hessian(), 2 * rows.T @ rows / 50, rtol=1e-5)
    np.testing.assert_allclose(full.input_norms(), np.linalg.norm(rows, axis=0), rtol=1e-5)
    np.testing.assert_allclose(diagonal.input_norms(), np.linalg.norm(rows, axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        full.update(np.ones((3, 5)))


def _two_input_model():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    merged = keras.layers.Concatenate()([keras.layers.Dense(4)(a), b])
    return keras.Model({"a": a, "b": b}, keras.layers.Dense(1)(merged))


def test_calibration_accepts_what_fit_accepts():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = RNG.normal(size=(10, 3)).astype("float32")
    assert [len(b) for b in calibration_batches(x, model, 4).batches] == [4, 4, 2]
    assert calibration_batches((x, np.zeros(10)), model, 5).num_samples == 10
    generator = ((x[i : i + 3], None) for i in range(0, 9, 3))
    assert len(calibration_batches(generator, model).batches) == 3
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(10))).batch(4)
    assert calibration_batches(dataset, model).num_samples == 10
    two = _two_input_model()
    data = {"a": x, "b": x[:, :2]}
    calibration = calibration_batches(data, two, 8)
    assert [v.shape for v in calibration.flat(0)] == [(8, 3), (8, 2)]


def test_calibration_errors_name_the_problem():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="needs `calibration_data`"):
        calibration_batches(None, model)
    with pytest.raises(ValueError, match="holds no examples"):
        calibration_batches(np.zeros((0, 3)), model)
    with pytest.raises(ValueError, match=r"wrong shape.*\(batch, 3\).*\(4, 5\)"):
        calibration_batches(np.zeros((4, 5)), model)
    with pytest.raises(ValueError, match="Missing: \\['b'\\]"):
        calibration_batches({"a": np.zeros((2, 3))}, _two_input_model())
    with pytest.raises(TypeError, match="calibration_data"):
        calibration_batches(3, model)
    with pytest.raises(ValueError, match="batch_size"):
        calibration_batches(np.zeros((4, 3)), model, batch_size=0)


def test_graph_run_matches_predict_and_drops_dead_tensors():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="d1")(inputs)
    residual = inputs + keras.layers.Dense(4, name="d2")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d3")(residual))
    graph = tracing.trace(model)
    x = RNG.normal(size=(6, 4)).astype("float32")
    run = GraphRun(graph, [[x[:3]], [x[3:]]])
    live = []
    for call in graph.calls:
        run.advance(call)
        live.append(len(run.values[0]))
    outputs = np.concatenate([keras.ops.convert_to_numpy(batch[0]) for batch in run.outputs()])
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert max(live) <= 3  # the input (for the skip), the current tensor, one more
    bypassed = run_graph(graph, [[x]], bypass={id(graph.calls[2]): 0})[0][0]
    d3 = model.get_layer("d3")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bypassed),
        keras.ops.convert_to_numpy(d3(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_recording_inputs_sees_sublayer_inputs_and_restores_the_layer():
    attention = keras.layers.MultiHeadAttention(2, 3)
    query = RNG.normal(size=(2, 4, 5)).astype("float32")
    before = keras.ops.convert_to_numpy(attention(query, query))
    seen = {}
    with recording_inputs(
        [attention.query_dense, attention.output_dense],
        lambda layer, x: seen.setdefault(layer.name, keras.ops.convert_to_numpy(x)),
    ):
        during = keras.ops.convert_to_numpy(attention(query, query))
    np.testing.assert_array_equal(before, during)
    np.testing.assert_array_equal(seen["query"], query)
    assert seen["attention_output"].shape == (2, 4, 2, 3)
    assert "call" not in vars(attention.query_dense)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(attention(query, query)), before)
