"""The zoo: one builder per model a Keras user might bring to keras_prune.

Every builder returns `(model, sample_inputs, description)`: a built model with random weights
(no downloads: `weights=None`, keras-hub backbones from small configs), a batch of inputs it
accepts (arrays, or a dict of arrays for dict inputs), and one line saying what the model
exercises. Sizes are the smallest each architecture accepts, so a model runs all stages in
seconds (the hand-written models) to a few minutes (NASNetMobile, DenseNet121) on 2 CPU cores.

`BUILDERS` maps model names to builders, in the order the benchmark table lists them.
"""

import keras
import numpy as np
from keras import layers

# Samples per batch handed to the stages: enough for a few training steps at batch size 2.
BATCH = 8
# Samples BatchNorm statistics are taken from (not the stages' batch): with 8, the statistics of
# channels that barely vary blow EfficientNet's logits up to ~1e3 and its float32 export error
# with them; 64 keep every application within a few units.
CALIBRATION_SAMPLES = 64
SEED = 0
VOCABULARY = 100
SEQUENCE = 12


def _images(size, channels=3, count=BATCH, seed=SEED):
    rng = np.random.default_rng(seed)
    return rng.random((count, size, size, channels), dtype=np.float32)


def _calibration_images(size):
    return _images(size, count=CALIBRATION_SAMPLES, seed=SEED + 1)


def _token_ids(vocabulary=VOCABULARY, length=SEQUENCE, padded=True):
    """Token ids in [1, vocabulary); with `padded`, each row ends in a run of zeros (padding)."""
    rng = np.random.default_rng(SEED)
    ids = rng.integers(1, vocabulary, (BATCH, length)).astype("int32")
    if padded:
        for row, used in enumerate(rng.integers(length // 2, length + 1, BATCH)):
            ids[row, used:] = 0
    return ids


def calibrate_batchnorm(model, inputs):
    """Sets every BatchNormalization's moving statistics to those of the batch `inputs`.

    With random weights and the initial statistics (mean 0, variance 1), activations shrink
    or grow layer after layer: MobileNet's logits are ~1e-21 at inference, which would make
    every output comparison vacuous. Calibrated statistics keep the signal near unit scale,
    as in a trained model.
    """
    norms = [layer for layer in _all_layers(model) if isinstance(layer, layers.BatchNormalization)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    model(inputs, training=True)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# -- keras.applications ------------------------------------------------------------------------

# Smallest input side each application accepts with include_top=True (Keras refuses smaller:
# "Input size must be at least 32x32"; Xception needs 71, InceptionV3 75).
APPLICATIONS = {
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "MobileNetV3Large": 32,
    "EfficientNetB0": 32,
    "EfficientNetV2B0": 32,
    "ResNet50": 32,
    "ResNet50V2": 32,
    "DenseNet121": 32,
    "NASNetMobile": 32,
    "Xception": 71,
    "InceptionV3": 75,
    "ConvNeXtTiny": 32,
    "VGG16": 32,
}


def _application(name):
    size = APPLICATIONS[name]

    def build():
        keras.utils.set_random_seed(SEED)
        constructor = getattr(keras.applications, name)
        # Logits, not softmax: comparisons of outputs near 1/10 would hide differences.
        model = constructor(
            weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
        )
        calibrate_batchnorm(model, _calibration_images(size))
        description = (
            f"keras.applications.{name}(weights=None), {size}x{size}x3, 10-class logits, "
            f"BatchNorm statistics of {CALIBRATION_SAMPLES} random images; "
            f"{model.count_params():,} params"
        )
        return model, _images(size), description

    build.__name__ = f"build_{name}"
    return build


# -- text and sequence models ------------------------------------------------------------------


def lstm_text():
    keras.utils.set_random_seed(SEED)
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, 16, mask_zero=True, name="embedding")(tokens)
    x = layers.LSTM(16, name="lstm")(x)
    outputs = layers.Dense(2, activation="softmax", name="classifier")(x)
    model = keras.Model(tokens, outputs, name="lstm_text")
    return (
        model,
        _token_ids(),
        "Functional text classifier: Embedding(mask_zero=True) -> LSTM -> Dense "
        "(the mask adds a NotEqual operation node)",
    )


def gru_text():
    keras.utils.set_random_seed(SEED)
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, 16, mask_zero=True, name="embedding")(tokens)
    x = layers.Bidirectional(layers.GRU(8, return_sequences=True), name="bi_gru")(x)
    x = layers.GRU(8, name="gru")(x)
    outputs = layers.Dense(3, activation="softmax", name="classifier")(x)
    model = keras.Model(tokens, outputs, name="gru_text")
    return (
        model,
        _token_ids(),
        "Functional text classifier: Embedding(mask_zero=True) -> Bidirectional(GRU) -> GRU -> "
        "Dense",
    )


def text_sequential():
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((SEQUENCE,), dtype="int32"),
            layers.Embedding(VOCABULARY, 16, mask_zero=True),
            layers.LSTM(16),
            layers.Dense(2, activation="softmax"),
        ],
        name="text_sequential",
    )
    return model, _token_ids(), "Sequential text classifier: Embedding(mask_zero=True) -> LSTM"


def transformer_encoder():
    """A one-block Transformer encoder written with keras.layers, the way tutorials do."""
    keras.utils.set_random_seed(SEED)
    dim, heads = 16, 2
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, dim, name="token_embedding")(tokens)
    # Position ids from the symbolic tokens, so the position Embedding is part of the graph.
    position_ids = keras.ops.zeros_like(tokens) + keras.ops.arange(SEQUENCE, dtype="int32")
    positions = layers.Embedding(SEQUENCE, dim, name="position_embedding")(position_ids)
    x = x + positions
    attention = layers.MultiHeadAttention(heads, dim // heads, name="attention")
    h = attention(query=x, value=x)
    x = layers.LayerNormalization(name="attention_norm")(x + h)
    h = layers.Dense(32, activation="gelu", name="ffn_in")(x)
    h = layers.Dense(dim, name="ffn_out")(h)
    x = layers.LayerNormalization(name="ffn_norm")(x + h)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(2, name="classifier")(x)
    model = keras.Model(tokens, outputs, name="transformer_encoder")
    return (
        model,
        _token_ids(padded=False),
        "Transformer encoder block: MultiHeadAttention called with keywords "
        "`mha(query=x, value=x)`, residual `x + h` operators, LayerNormalization, "
        "position ids from keras.ops on the symbolic input",
    )


def rnn_layers():
    """RNNs without a mask: only Layers in the graph, so RNN support shows apart from mask nodes."""
    keras.utils.set_random_seed(SEED)
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, 16, name="embedding")(tokens)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True), name="bi_lstm")(x)
    x = layers.GRU(8, return_sequences=True, name="gru")(x)
    x = layers.SimpleRNN(8, name="simple_rnn")(x)
    outputs = layers.Dense(2, name="classifier")(x)
    model = keras.Model(tokens, outputs, name="rnn_layers")
    return (
        model,
        _token_ids(padded=False),
        "Embedding (no mask) -> Bidirectional(LSTM) -> GRU -> SimpleRNN -> Dense, Layers only",
    )


def transformer_layers():
    """The Transformer block again with Layers only (Add, positional MHA call, EinsumDense)."""
    keras.utils.set_random_seed(SEED)
    dim, heads = 16, 2
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCABULARY, dim, name="token_embedding")(tokens)
    h = layers.MultiHeadAttention(heads, dim // heads, name="attention")(x, x)
    x = layers.LayerNormalization(name="attention_norm")(layers.Add(name="residual1")([x, h]))
    h = layers.EinsumDense("abc,cd->abd", (SEQUENCE, 32), activation="gelu", name="ffn_in")(x)
    h = layers.EinsumDense("abd,dc->abc", (SEQUENCE, dim), name="ffn_out")(h)
    x = layers.LayerNormalization(name="ffn_norm")(layers.Add(name="residual2")([x, h]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(2, name="classifier")(x)
    model = keras.Model(tokens, outputs, name="transformer_layers")
    return (
        model,
        _token_ids(padded=False),
        "Transformer block with Layers only: MultiHeadAttention(x, x), Add, EinsumDense "
        "feed-forward, LayerNormalization",
    )


def conv1d_timeseries():
    keras.utils.set_random_seed(SEED)
    series = keras.Input((32, 3), name="series")
    x = layers.Conv1D(16, 5, padding="causal", activation="relu", name="conv1")(series)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Conv1D(16, 3, dilation_rate=2, padding="causal", activation="relu", name="conv2")(x)
    x = layers.MaxPooling1D(2, name="pool")(x)
    x = layers.Conv1D(32, 3, activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = layers.Dense(1, name="forecast")(x)
    model = keras.Model(series, outputs, name="conv1d_timeseries")
    calibration = np.random.default_rng(SEED + 1).standard_normal((CALIBRATION_SAMPLES, 32, 3))
    calibrate_batchnorm(model, calibration.astype("float32"))
    return (
        model,
        np.random.default_rng(SEED).standard_normal((BATCH, 32, 3)).astype("float32"),
        "Conv1D time-series regressor: causal and dilated Conv1D, BatchNorm, pooling",
    )


# -- graph shapes ------------------------------------------------------------------------------


def sequential_cnn():
    """The control: the kind of model keras_prune's own tests use, expected to pass today."""
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.MaxPooling2D(name="pool"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="hidden"),
            layers.Dense(10, name="logits"),
        ],
        name="sequential_cnn",
    )
    calibrate_batchnorm(model, _calibration_images(16))
    return model, _images(16), "Sequential CNN, only Layers in the graph (the control)"


def residual_cnn():
    """A small CNN whose residuals are Python operators, not `layers.Add`."""
    keras.utils.set_random_seed(SEED)
    images = keras.Input((16, 16, 3), name="images")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(images)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block in range(2):
        h = layers.Conv2D(16, 3, padding="same", activation="relu", name=f"block{block}_a")(x)
        h = layers.Conv2D(16, 3, padding="same", name=f"block{block}_b")(h)
        x = x + h
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    model = keras.Model(images, outputs, name="residual_cnn")
    return (
        calibrate_batchnorm(model, _calibration_images(16)),
        _images(16),
        "Functional CNN with residual `x + h` operator nodes (no Add layer), BatchNorm, GAP",
    )


def nested_model():
    keras.utils.set_random_seed(SEED)
    inner_in = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="inner_conv1")(inner_in)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="inner_conv2")(h)
    feature_extractor = keras.Model(inner_in, h, name="feature_extractor")
    images = keras.Input((16, 16, 3), name="images")
    x = feature_extractor(images)
    x = layers.Conv2D(16, 1, activation="relu", name="outer_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    model = keras.Model(images, outputs, name="nested_model")
    return (
        model,
        _images(16),
        "Functional model used as a layer inside another Functional model",
    )


def shared_layer():
    keras.utils.set_random_seed(SEED)
    left = keras.Input((8,), name="left")
    right = keras.Input((8,), name="right")
    shared = layers.Dense(16, activation="relu", name="shared_dense")
    x = layers.Concatenate(name="concat")([shared(left), shared(right)])
    outputs = layers.Dense(1, name="score")(x)
    model = keras.Model([left, right], outputs, name="shared_layer")
    rng = np.random.default_rng(SEED)
    inputs = [rng.standard_normal((BATCH, 8)).astype("float32") for _ in range(2)]
    return model, inputs, "Siamese model: one Dense called on two inputs"


def multi_input():
    keras.utils.set_random_seed(SEED)
    images = keras.Input((16, 16, 3), name="images")
    tabular = keras.Input((5,), name="tabular")
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(images)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    t = layers.Dense(8, activation="relu", name="tabular_dense")(tabular)
    x = layers.Concatenate(name="concat")([x, t])
    outputs = layers.Dense(3, name="logits")(x)
    model = keras.Model({"images": images, "tabular": tabular}, outputs, name="multi_input")
    rng = np.random.default_rng(SEED)
    inputs = {"images": _images(16), "tabular": rng.standard_normal((BATCH, 5)).astype("float32")}
    return model, inputs, "Two inputs (image, tabular) passed as a dict, concatenated"


def multi_output():
    keras.utils.set_random_seed(SEED)
    images = keras.Input((16, 16, 3), name="images")
    x = layers.Conv2D(16, 3, activation="relu", name="conv")(images)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(16, activation="relu", name="trunk")(x)
    label = layers.Dense(10, name="label")(x)
    box = layers.Dense(4, name="box")(x)
    model = keras.Model(images, [label, box], name="multi_output")
    return model, _images(16), "One input, two heads (list outputs) on a shared trunk"


def ops_model():
    keras.utils.set_random_seed(SEED)
    sequence = keras.Input((10, 6), name="sequence")
    h = layers.Dense(16, activation="relu", name="project")(sequence)
    pooled = keras.ops.mean(h, axis=1)
    first = h[:, 0]
    x = keras.ops.concatenate([pooled, first], axis=-1)
    outputs = layers.Dense(2, name="head")(x)
    model = keras.Model(sequence, outputs, name="ops_model")
    rng = np.random.default_rng(SEED)
    return (
        model,
        rng.standard_normal((BATCH, 10, 6)).astype("float32"),
        "keras.ops on symbolic tensors: keras.ops.mean(x, axis=1), x[:, 0], keras.ops.concatenate",
    )


# -- subclassed and custom layers --------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_prune_zoo")
class SmallClassifier(keras.Model):
    """A subclassed model: layers as attributes, a hand-written `call`."""

    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = layers.Conv2D(8, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.hidden = layers.Dense(16, activation="relu")
        self.head = layers.Dense(classes)

    def call(self, inputs, training=False):
        return self.head(self.hidden(self.pool(self.conv(inputs))))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def subclassed():
    keras.utils.set_random_seed(SEED)
    model = SmallClassifier(name="subclassed")
    inputs = _images(16)
    model(inputs[:1])
    return model, inputs, "Subclassed keras.Model (layers as attributes, custom call)"


@keras.saving.register_keras_serializable(package="keras_prune_zoo")
class GatedDense(keras.layers.Layer):
    """A custom layer built from two Dense sublayers: `value(x) * sigmoid(gate(x))`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.value = layers.Dense(units)
        self.gate = layers.Dense(units, activation="sigmoid")

    def build(self, input_shape):
        self.value.build(input_shape)
        self.gate.build(input_shape)

    def call(self, inputs):
        return self.value(inputs) * self.gate(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def timedistributed_custom():
    keras.utils.set_random_seed(SEED)
    frames = keras.Input((6, 8), name="frames")
    x = layers.TimeDistributed(layers.Dense(16, activation="relu"), name="per_step")(frames)
    x = GatedDense(16, name="gated")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = layers.Dense(4, name="logits")(x)
    model = keras.Model(frames, outputs, name="timedistributed_custom")
    rng = np.random.default_rng(SEED)
    return (
        model,
        rng.standard_normal((BATCH, 6, 8)).astype("float32"),
        "TimeDistributed(Dense) and a custom layer built from two Dense sublayers",
    )


# -- keras-hub backbones (small configs, no presets: those need the network) ------------------


def _hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "The keras-hub zoo models need keras-hub: `pip install keras-hub`."
        ) from error
    return keras_hub


def hub_bert():
    keras_hub = _hub()
    keras.utils.set_random_seed(SEED)
    model = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE,
    )
    token_ids = _token_ids(padded=False)
    inputs = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": np.ones_like(token_ids),
    }
    return (
        model,
        inputs,
        "keras_hub BertBackbone, 2 layers, hidden 16 (dict inputs, dict outputs, "
        "TransformerEncoder layers)",
    )


def hub_gpt2():
    keras_hub = _hub()
    keras.utils.set_random_seed(SEED)
    model = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE,
    )
    token_ids = _token_ids(padded=False)
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return (
        model,
        inputs,
        "keras_hub GPT2Backbone, 2 layers, hidden 16 (dict inputs, TransformerDecoder layers)",
    )


def hub_vit():
    keras_hub = _hub()
    keras.utils.set_random_seed(SEED)
    model = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )
    return (
        model,
        _images(16),
        "keras_hub ViTBackbone, 16x16 images, 4x4 patches, 2 layers, hidden 16",
    )


BUILDERS = {
    "sequential_cnn": sequential_cnn,
    **{name: _application(name) for name in APPLICATIONS},
    "lstm_text": lstm_text,
    "gru_text": gru_text,
    "text_sequential": text_sequential,
    "rnn_layers": rnn_layers,
    "transformer_encoder": transformer_encoder,
    "transformer_layers": transformer_layers,
    "conv1d_timeseries": conv1d_timeseries,
    "residual_cnn": residual_cnn,
    "nested_model": nested_model,
    "shared_layer": shared_layer,
    "multi_input": multi_input,
    "multi_output": multi_output,
    "ops_model": ops_model,
    "subclassed": subclassed,
    "timedistributed_custom": timedistributed_custom,
    "hub_bert": hub_bert,
    "hub_gpt2": hub_gpt2,
    "hub_vit": hub_vit,
}
