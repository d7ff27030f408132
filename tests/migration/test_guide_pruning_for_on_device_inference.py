"""tfmot's guide "Pruning for on-device inference w/ XNNPACK"
(g3doc/guide/pruning/pruning_for_on_device_inference.ipynb), run with keras_prune's names.

Offline and small: CIFAR10 from tensorflow_datasets is replaced by 200 random 32x32x3 training
images in batches of 2 (the guide's `prepare_dataset` otherwise), so that an epoch is 100 steps
and the schedule's default frequency=100 still updates the masks after the first one; the dense
model trains ten steps instead of ten epochs, and fine-tuning runs two epochs with pruning ending
after the first (the guide: fifteen epochs, pruning ending after five). The on-device benchmark
(adb) is left out.
"""

import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import get_sparsity, value

# Trains two CNNs for 210 steps and converts one to TFLite: 10-20 s.
pytestmark = pytest.mark.slow

batch_size = 2


def prepare_dataset(images, labels, buffer_size=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.cache()
    if buffer_size:
        ds = ds.shuffle(buffer_size)
    ds = ds.batch(batch_size)
    ds = ds.prefetch(tf.data.experimental.AUTOTUNE)
    return ds


@pytest.fixture(scope="module")
def datasets():
    rng = np.random.default_rng(0)

    def split(count):
        images = rng.random((count, 32, 32, 3), dtype=np.float32)
        return images, rng.integers(0, 10, count)

    ds_train = prepare_dataset(*split(200), buffer_size=200)
    ds_val = prepare_dataset(*split(8))
    ds_test = prepare_dataset(*split(8))
    return ds_train, ds_val, ds_test


def build_dense_model(keepdims):
    return keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=(32, 32, 3)),
            keras.layers.ZeroPadding2D(padding=1),
            keras.layers.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(filters=16, kernel_size=(1, 1)),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.ZeroPadding2D(padding=1),
            keras.layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(filters=32, kernel_size=(1, 1)),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(keepdims=keepdims),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


@pytest.fixture(scope="module")
def dense_model(datasets):
    ds_train, ds_val, _ = datasets
    keras.utils.set_random_seed(0)
    # Build the dense baseline model.
    dense_model = build_dense_model(keepdims=False)

    dense_model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )

    dense_model.fit(ds_train.take(10), epochs=1, validation_data=ds_val, verbose=0)
    return dense_model


def pruning_params(ds_train, end_epoch=1):
    # Compute end step to finish pruning after `end_epoch` epochs.
    num_iterations_per_epoch = len(ds_train)
    end_step = num_iterations_per_epoch * end_epoch

    return {
        "pruning_schedule": kp.tfmot.PolynomialDecay(
            initial_sparsity=0.25, final_sparsity=0.75, begin_step=0, end_step=end_step
        ),
        "pruning_policy": kp.tfmot.PruneForLatencyOnXNNPack(),
    }


def test_model_ending_in_flat_pooling_prunes_as_tfmot_0_8_1_does(datasets, dense_model):
    # The guide (written for an older tfmot) says this model is refused because its
    # GlobalAveragePooling2D has keepdims=False. tfmot 0.8.1 accepts it: the policy's end layer
    # is any GlobalAveragePooling2D (tfmot commit 33a3718 removed the keepdims rule, and four of
    # its own unit tests rely on that). keras_prune follows tfmot 0.8.1.
    ds_train, _, _ = datasets
    pruned = kp.tfmot.prune_low_magnitude(dense_model, **pruning_params(ds_train))
    assert kp.layers.find_wrappers(pruned)


@pytest.fixture(scope="module")
def model_for_pruning(datasets, dense_model):
    ds_train, ds_val, _ = datasets
    fixed_dense_model = build_dense_model(keepdims=True)

    # Use the pretrained model for pruning instead of training from scratch.
    fixed_dense_model.set_weights(dense_model.get_weights())

    # Try to reapply pruning wrapper.
    model_for_pruning = kp.tfmot.prune_low_magnitude(fixed_dense_model, **pruning_params(ds_train))

    logdir = tempfile.mkdtemp()

    callbacks = [
        kp.tfmot.UpdatePruningStep(),
        kp.tfmot.PruningSummaries(log_dir=logdir),
    ]

    model_for_pruning.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )

    model_for_pruning.fit(
        ds_train, epochs=2, validation_data=ds_val, callbacks=callbacks, verbose=0
    )
    return model_for_pruning


def test_fine_tuning_prunes_the_1x1_convolutions(model_for_pruning, datasets):
    _, _, ds_test = datasets
    wrappers = [layer for layer in model_for_pruning.layers if isinstance(layer, kp.PruneWrapper)]
    # The policy prunes the 1x1 convolutions after the first convolution.
    assert [tuple(w.layer.kernel_size) for w in wrappers] == [(1, 1), (1, 1)]
    for wrapper in wrappers:
        for weight in wrapper.prunable_weights:
            # "We start fine-tuning of the model with 25% sparsity ... and end with 75%".
            np.testing.assert_allclose(get_sparsity(value(weight)), 0.75, atol=0.01)
    model_for_pruning.evaluate(ds_test, verbose=0)


def test_conversion_with_sparse_encoding(model_for_pruning, datasets):
    _, _, ds_test = datasets
    model_for_export = kp.tfmot.strip_pruning(model_for_pruning)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    pruned_tflite_model = converter.convert()

    _, pruned_tflite_file = tempfile.mkstemp(".tflite")
    with open(pruned_tflite_file, "wb") as f:
        f.write(pruned_tflite_model)

    interpreter = tf.lite.Interpreter(model_content=pruned_tflite_model)
    interpreter.allocate_tensors()
    images, _ = next(iter(ds_test))
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images[:1].numpy())
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
        model_for_export.predict(images[:1], verbose=0),
        rtol=1e-4,
        atol=1e-4,
    )
