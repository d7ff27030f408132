"""macs: multiply-accumulates of every layer keras_prune prunes, against hand-written formulas."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

from keras_prune.graph import tracing  # noqa: E402
from keras_prune.reporting import macs  # noqa: E402

layers = keras.layers


def costs_by_name(model):
    return {cost.name: cost for cost in macs.layer_costs(model)}


def test_attention_einsum_and_recurrent_layers_match_their_formulas():
    inputs = keras.Input((5, 8))
    x = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    x = layers.EinsumDense("abc,cd->abd", (5, 6), bias_axes="d", name="einsum")(x)
    x = layers.LSTM(6, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True), name="bi")(x)
    outputs = layers.GRU(3, name="gru")(x)
    costs = costs_by_name(keras.Model(inputs, outputs))
    tq = tk = 5
    projections = 4 * tq * (8 * 2 * 4)  # query, key, value, output: 8 -> 2 heads x 4
    assert costs["mha"].macs == projections + 2 * tq * tk * 2 * 4
    assert costs["einsum"].macs == 5 * 8 * 6
    assert costs["lstm"].macs == 5 * (6 * 24 + 6 * 24)  # 4 gates x 6 units
    assert costs["bi"].macs == 2 * 5 * (6 * 9 + 3 * 9)  # 3 gates x 3 units, both directions
    assert costs["gru"].macs == 5 * (6 * 9 + 3 * 9)
    assert all(cost.note == "" for cost in costs.values())


def test_conv_lstm_counts_both_kernels_at_every_position_and_step():
    inputs = keras.Input((4, 6, 6, 2))
    outputs = layers.ConvLSTM2D(3, 3, padding="same", name="conv_lstm")(inputs)
    cost = costs_by_name(keras.Model(inputs, outputs))["conv_lstm"]
    assert cost.macs == 4 * 6 * 6 * (3 * 3 * 2 * 12 + 3 * 3 * 3 * 12)


def test_unknown_sequence_length_counts_per_time_step_and_says_so():
    inputs = keras.Input((None, 8))
    outputs = layers.Dense(4, name="dense")(layers.LSTM(4, return_sequences=True)(inputs))
    costs = macs.layer_costs(keras.Model(inputs, outputs))
    assert [cost.macs for cost in costs] == [8 * 16 + 4 * 16, 4 * 4]
    assert all("per time step" in cost.note for cost in costs)


def test_embedding_has_parameters_and_no_macs():
    inputs = keras.Input((7,), dtype="int32")
    x = layers.Embedding(50, 8, name="embedding")(inputs)
    outputs = layers.Dense(3, name="dense")(x)
    costs = costs_by_name(keras.Model(inputs, outputs))
    assert (costs["embedding"].params, costs["embedding"].macs) == (400, 0)
    assert costs["dense"].macs == 7 * 8 * 3


def test_composite_layer_is_the_sum_of_its_sublayers():
    inputs = keras.Input((5, 6))
    outputs = layers.TimeDistributed(layers.Dense(4), name="td")(inputs)
    cost = costs_by_name(keras.Model(inputs, outputs))["td"]
    assert (cost.params, cost.macs) == (28, 5 * 6 * 4)


def test_matmul_and_einsum_operations_count_their_multiply_adds():
    a, b = keras.Input((4, 6)), keras.Input((6, 3))
    outputs = keras.ops.matmul(a, b) + keras.ops.einsum("btc,bcd->btd", a, b)
    model = keras.Model([a, b], outputs)
    costs = macs.layer_costs(model)
    assert [(cost.kind, cost.macs) for cost in costs] == [("Matmul", 72), ("Einsum", 72)]
    call = next(c for c in tracing.trace(model).calls if type(c.operation).__name__ == "Add")
    assert macs.call_macs(call) == (0, "")  # element-wise operations count zero


def test_bert_backbone_counts_its_transformer_blocks_per_token():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=64,
    )
    costs = costs_by_name(backbone)
    block = costs["transformer_layer_0"]
    # Per token (the sequence length is unknown): 4 attention projections 32x32, scores and
    # weighted sum over one key (2 heads x (16 + 16)), feed-forward 32 -> 64 -> 32.
    assert block.macs == 4 * 32 * 32 + 2 * (16 + 16) + 2 * 32 * 64
    assert "per time step" in block.note
    assert costs["token_embedding"].macs == 0 and costs["token_embedding"].params == 32000
    totals = macs.count(backbone)
    assert totals["macs"] > 0 and totals["params"] == backbone.count_params()


class EagerOnlyBlock(layers.Layer):
    """A transformer-like block whose `call` cannot run on symbolic tensors (as keras-hub's
    cached decoder attention cannot): Keras builds it from `compute_output_shape`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=4)
        self.up = layers.Dense(12)
        self.down = layers.Dense(8)
        self.norm = layers.LayerNormalization()

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.up.build(input_shape)
        self.down.build((*input_shape[:-1], 12))
        self.norm.build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        if isinstance(x, keras.KerasTensor):
            raise TypeError("this block runs on concrete tensors only")
        x = self.norm(x + self.attention(x, x))
        return x + self.down(self.up(x))


def test_composite_that_cannot_run_symbolically_counts_its_sublayers_token_wise():
    inputs = keras.Input((5, 8))
    outputs = EagerOnlyBlock(name="block")(inputs)
    cost = costs_by_name(keras.Model(inputs, outputs))["block"]
    tokens = 5
    attention = 4 * tokens * (8 * 2 * 4) + tokens * tokens * 2 * (4 + 4)
    assert cost.macs == attention + tokens * (8 * 12 + 12 * 8)
    assert "counted token-wise" in cost.note
