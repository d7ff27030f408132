"""`ChannelGate`: input-dependent channel saliency with top-k selection (feature boosting and
suppression, Gao et al. 2019), and the statistics it leaves for static channel pruning.

For every input, a small predictor (global average pooling and a Dense layer with ReLU) scores
the channels of a feature map; the `keep` fraction with the highest scores are scaled by their
score, the others are set to zero. Trained with a sparsity regularizer on the scores
(`kp.regularizers.L1`), few channels carry most of the signal.

On a phone this saves nothing by itself: LiteRT computes every channel of the layer before the
gate and has no kernel that skips the zeroed ones, so the gate only adds work (measured in
`benchmarks/bench_dynamic.py`). What it is good for is a ranking: `gate_channel_scores` gives
each channel's average gated saliency over calibration data, which `prune_by_gate_scores`
turns into a static channel pruning of the model without its gates (`remove_gates`).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_prune.core import validation
from keras_prune.dynamic.batchnorm import calibration_batches
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import rewire
from keras_prune.surgery import zeros as zeros_lib


@keras.saving.register_keras_serializable(package="keras_prune")
class ChannelGate(keras.layers.Layer):
    """Keeps the `keep` most salient channels of each input's feature map, scaled by saliency.

    Args:
        keep: fraction of channels kept per input, in (0, 1].
        regularizer: activity regularizer on the saliencies, e.g. `kp.regularizers.L1(1e-4)`
            (a sparsity regularizer of `kp.regularizers`, or any Keras regularizer).
        **kwargs: forwarded to `keras.layers.Layer`.

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = kp.dynamic.ChannelGate(keep=0.5, regularizer=kp.regularizers.L1(1e-4))(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    gated = keras.Model(inputs, outputs)
    ```
    """

    def __init__(self, keep=0.5, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.keep = validation.check_real("keep", keep, low=0.0, high=1.0, low_open=True)
        self.regularizer = keras.regularizers.get(regularizer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.channels = channels
        self.kept = max(1, math.ceil(round(self.keep * channels, 6)))
        self.predictor = keras.layers.Dense(
            channels,
            activation="relu",
            bias_initializer="ones",  # every channel open at the start
            activity_regularizer=self.regularizer,
            name="saliency",
        )
        self.predictor.build((input_shape[0], channels))

    def saliency(self, inputs):
        """Per-input channel scores after top-k: `(batch, channels)`, zero where dropped."""
        rank = len(inputs.shape)
        pooled = ops.mean(inputs, axis=tuple(range(1, rank - 1))) if rank > 2 else inputs
        scores = self.predictor(pooled)
        if self.kept < self.channels:
            threshold = ops.top_k(scores, self.kept, sorted=True)[0][:, -1:]
            scores = scores * ops.cast(scores >= threshold, scores.dtype)
        return scores

    def call(self, inputs):
        scores = self.saliency(inputs)
        shape = [-1] + [1] * (len(inputs.shape) - 2) + [self.channels]
        return inputs * ops.reshape(scores, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(keep=self.keep, regularizer=keras.regularizers.serialize(self.regularizer))
        return config


def _gates(model):
    return [layer for layer in model.layers if isinstance(layer, ChannelGate)]


def gate_channel_scores(model, calibration_data, *, batch_size=64):
    """Each gate's average saliency per channel (zero when top-k dropped it) over the data.

    Args:
        model: a built model with `ChannelGate` layers.
        calibration_data: inputs (`x`, `(x, y)` or batches).
        batch_size: batch size for arrays.

    Returns:
        `{gate layer name: {"scores": float array (channels,), "active": mean fraction of
        channels with a non-zero score}}`.

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = kp.dynamic.ChannelGate(keep=0.5, regularizer=kp.regularizers.L1(1e-4))(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    gated = keras.Model(inputs, outputs)
    scores = kp.dynamic.gate_channel_scores(gated, x)
    ```
    """
    gates = _gates(model)
    if not gates:
        raise ValueError(f"Model {model.name!r} has no ChannelGate layers.")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, [gate.input for gate in gates])
    sums = [np.zeros(gate.channels) for gate in gates]
    active = [0.0 for _ in gates]
    count = 0
    for batch in calibration_batches(calibration_data, batch_size):
        features = probe(batch)
        features = features if isinstance(features, (list, tuple)) else [features]
        for index, (gate, value) in enumerate(zip(gates, features, strict=True)):
            scores = np.asarray(ops.convert_to_numpy(gate.saliency(value)))
            sums[index] += scores.sum(0)
            active[index] += float((scores > 0).sum()) / gate.channels
        count += len(np.asarray(batch))
    return {
        gate.name: {"scores": sums[i] / count, "active": active[i] / count}
        for i, gate in enumerate(gates)
    }


def remove_gates(model):
    """A copy of `model` without its `ChannelGate` layers (each replaced by an identity), with
    the other layers' weights: the static model the gate statistics prune."""
    copy = rewire.replace_layers(
        model,
        lambda layer: (
            keras.layers.Identity(name=layer.name)
            if isinstance(layer, ChannelGate)
            else layer.__class__.from_config(layer.get_config())
        ),
    )
    for layer in model.layers:
        if not isinstance(layer, ChannelGate) and layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def prune_by_gate_scores(model, scores, sparsity):
    """Zero, in place, the share `sparsity` of the channels with the lowest gate scores in every
    channel group a gate saw; `kp.shrink(model)` then removes them.

    Args:
        model: the model without gates (`remove_gates`), whose gated layers kept their names
            (the gates became identities of the same name).
        scores: `gate_channel_scores(...)` of the gated model.
        sparsity: share of each such group's channels to remove, in [0, 1).

    Returns:
        `{group index: removed channels}`.
    """
    sparsity = validation.check_sparsity("sparsity", sparsity)
    analysis = groups_lib.analyze(model)
    groups = analysis.groups()
    removed = {}
    for name in scores:
        producer = _producer_group(analysis, groups, model.get_layer(name))
        if producer is None or not producer.prunable or producer.index in removed:
            continue
        channel_scores = scores[name]["scores"]
        drop = int(math.floor(sparsity * producer.size))
        order = np.argsort(channel_scores, kind="stable")[:drop]
        zeros_lib.zero_group_channels(producer, order)
        removed[producer.index] = order
    return removed


def _producer_group(analysis, groups, identity):
    """The group of the channels flowing through `identity` (the gate's replacement)."""
    calls = analysis.graph.calls_of(identity)
    if len(calls) != 1:
        return None
    layout = analysis.layout(calls[0].outputs[0])
    if len(layout.segments) != 1:
        return None
    root = analysis.atoms.root(layout.segments[0][0])
    return next((group for group in groups if group.root == root), None)
