"""Port of tfmot's sparsity/keras/pruning_policy_test.py (PruneForLatencyOnXNNPack).

`pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack()` is
`pruning_policy=kp.tfmot.PruneForLatencyOnXNNPack()` (docs/migrating_from_tfmot.md). tfmot's
exact error messages are kept below for reference; the tests assert what they name.
"""

import keras
import pytest

import keras_prune as kp

from .helpers import count_pruned_layers

layers = keras.layers

INVALID_TO_PRUNE_START_LAYER_ERROR = (
    "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3`"
    " and `VALID` padding and preceding `ZeroPadding2D` with `padding == 1` "
    "in all input branches of the model"
)

INVALID_TO_PRUNE_STOP_LAYER_ERROR = (
    "Could not find a `GlobalAveragePooling2D` layer in all output branches"
)

INVALID_TO_PRUNE_MIDDLE_LAYER_ERROR = (
    "Layer {} is not supported for the PruneForLatencyOnXNNPack pruning policy"
)

INVALID_TO_PRUNE_UNBUILT_ERROR = "Unbuilt models are not supported currently."

PARAMS = {
    "pruning_schedule": kp.tfmot.ConstantSparsity(0.5, 0),
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
}


def prune_for_xnnpack(model):
    """tfmot's call in every test of this file."""
    return kp.tfmot.prune_low_magnitude(
        model, pruning_policy=kp.tfmot.PruneForLatencyOnXNNPack(), **PARAMS
    )


def test_prune_unsupported_model_for_latency_on_xnnpack_policy_no_start_layer():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="same")(i)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune_for_xnnpack(model)
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: `str(e.value) == INVALID_TO_PRUNE_START_LAYER_ERROR`.)
    assert "Conv2D" in str(e.value) and "ZeroPadding2D" in str(e.value)


def test_prune_unsupported_model_for_latency_on_xnnpack_policy_no_stop_layer():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    # Keras 3's AveragePooling2D has no default pool_size; tf_keras' was (2, 2).
    o = layers.AveragePooling2D(pool_size=(2, 2))(x)
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune_for_xnnpack(model)
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: `str(e.value) == INVALID_TO_PRUNE_STOP_LAYER_ERROR`.)
    assert "GlobalAveragePooling2D" in str(e.value)


def test_prune_unsupported_model_for_latency_on_xnnpack_policy_middle_layer():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2))(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune_for_xnnpack(model)
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: `str(e.value) == INVALID_TO_PRUNE_MIDDLE_LAYER_ERROR.format("MaxPooling2D")`.)
    assert layers.MaxPooling2D.__name__ in str(e.value)


def test_prune_sequential_model_for_latency_on_xnnpack_policy():
    # No InputLayer
    model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            layers.Conv2D(filters=8, kernel_size=[1, 1]),
            layers.GlobalAveragePooling2D(),
        ]
    )
    with pytest.raises(ValueError) as e:
        prune_for_xnnpack(model)
    # deliberate difference: "Errors are keras_prune's own: a ValueError or TypeError naming the
    # value received and how to fix it; tfmot's messages are not reproduced, and an object that is
    # not a model, a layer or a list of layers raises TypeError (tfmot: ValueError)."
    # (tfmot: `str(e.value) == INVALID_TO_PRUNE_UNBUILT_ERROR`.)
    assert "built" in str(e.value)

    # With InputLayer
    model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1, input_shape=(8, 8, 3)),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            layers.Conv2D(filters=8, kernel_size=[1, 1]),
            layers.GlobalAveragePooling2D(),
        ]
    )
    pruned_model = prune_for_xnnpack(model)
    assert count_pruned_layers(pruned_model) == 1


def test_prune_model_recursively_for_latency_on_xnnpack_policy():
    original_model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1, input_shape=(8, 8, 3)),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            keras.Sequential(
                [
                    layers.Conv2D(filters=8, kernel_size=[1, 1]),
                    layers.Conv2D(filters=16, kernel_size=[1, 1]),
                ]
            ),
            layers.GlobalAveragePooling2D(),
        ]
    )
    pruned_model = prune_for_xnnpack(original_model)
    assert count_pruned_layers(pruned_model) == 2


def test_prune_functional_model_with_layer_reused_for_latency_on_xnnpack_policy():
    # The model reuses the Conv2D() layer. Make sure it's only pruned once.
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    conv_layer = layers.Conv2D(filters=16, kernel_size=[1, 1])
    x = conv_layer(x)
    x = conv_layer(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    pruned_model = prune_for_xnnpack(model)
    assert count_pruned_layers(pruned_model) == 1


def test_functional_model_no_pruning_layers_for_latency_on_xnnpack_policy():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    x = layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same")(x)
    x = layers.Activation("relu")(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])

    # deliberate difference: "`kp.prune` raises a ValueError when a model has nothing at all to
    # prune (tfmot returned it unchanged); pruning an already pruned model again is fine and keeps
    # its wrappers."
    # (tfmot: `count_pruned_layers(pruned_model) == 0`.)
    with pytest.raises(ValueError):
        prune_for_xnnpack(model)


def test_functional_model_for_latency_on_xnnpack_policy():
    i1 = keras.Input(shape=(16, 16, 3))
    x1 = layers.ZeroPadding2D(padding=1)(i1)
    x1 = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x1)
    x1_1 = layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same")(x1)
    x1_2 = layers.Conv2D(filters=16, kernel_size=[1, 1])(x1)
    x1 = layers.Add()([x1_1, x1_2])

    i2 = keras.Input(shape=(16, 16, 3))
    x2 = layers.ZeroPadding2D(padding=1)(i2)
    x2 = layers.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x2)
    x2 = layers.ZeroPadding2D(padding=1)(x2)
    x2 = layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid")(x2)
    # tfmot's CompatGlobalAveragePooling2D existed for TF <= 2.5 (no keepdims).
    x2_1 = layers.GlobalAveragePooling2D(keepdims=True)(x2)
    x2_1 = layers.Conv2D(filters=32, kernel_size=[1, 1])(x2_1)
    x2_1 = layers.Activation("sigmoid")(x2_1)
    x2_2 = layers.Conv2D(filters=32, kernel_size=[1, 1])(x2)
    x2_2 = layers.UpSampling2D(interpolation="bilinear")(x2_2)
    x2 = layers.Multiply()([x2_1, x2_2])

    x2 = layers.Conv2D(filters=16, kernel_size=[1, 1])(x2)
    x = layers.Add()([x1, x2])
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)

    o1 = layers.Conv2D(filters=7, kernel_size=[1, 1])(x)
    o2 = layers.Conv2D(filters=3, kernel_size=[1, 1])(x)
    model = keras.Model(inputs=[i1, i2], outputs=[o1, o2])

    pruned_model = prune_for_xnnpack(model)
    assert count_pruned_layers(pruned_model) == 6


def test_prune_functional_model_after_clone_for_latency_on_xnnpack_policy():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    o = layers.GlobalAveragePooling2D()(x)
    original_model = keras.Model(inputs=[i], outputs=[o])

    cloned_model = keras.models.clone_model(original_model, clone_function=lambda layer: layer)
    pruned_model = prune_for_xnnpack(cloned_model)
    assert count_pruned_layers(pruned_model) == 1


def test_functional_model_with_tf_ops_for_latency_on_xnnpack_policy():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    residual = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    x = x + residual
    x = x - residual
    x = x * residual
    # tfmot: `tf.identity(x)`; TensorFlow ops do not take Keras 3 symbolic tensors.
    x = layers.Identity()(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])

    pruned_model = prune_for_xnnpack(model)
    assert count_pruned_layers(pruned_model) == 1


def test_functional_model_for_latency_on_double_xnnpack_policy():
    i = keras.Input(shape=(8, 8, 3))
    x = layers.ZeroPadding2D(padding=1)(i)
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])

    pruned_model = prune_for_xnnpack(model)
    assert count_pruned_layers(pruned_model) == 1
    double_pruned_model = prune_for_xnnpack(pruned_model)
    assert count_pruned_layers(double_pruned_model) == 1
