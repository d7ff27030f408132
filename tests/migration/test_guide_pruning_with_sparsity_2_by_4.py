"""tfmot's guide "Sparse weights using structural pruning"
(g3doc/guide/pruning/pruning_with_sparsity_2_by_4.ipynb), run with keras_prune's names.

Offline and small: MNIST (28x28) is replaced by scikit-learn's bundled digits (8x8, so the first
layer's `input_shape` is (8, 8, 1)), and training runs one epoch of batches of 12 instead of two
epochs of 128, so that the epoch still has more than 100 steps: the unstructured layer's
schedule (frequency=100) updates its mask at step 100 as on MNIST. The renames are
the guide's (`tfmot.sparsity.keras.X` -> `kp.X`, `tf.keras` -> `keras`). Plotting is left out;
the guide's claims about the weights it plots are asserted instead, on the weights read back from
the TFLite file as the guide reads them.
"""

import tempfile

import keras
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import get_sparsity, is_pruned_m_by_n

# Trains for 108 steps and converts to TFLite: 8-15 s.
pytestmark = pytest.mark.slow

pruning_params_2_by_4 = {
    "sparsity_m_by_n": (2, 4),
}

pruning_params_sparsity_0_5 = {
    "pruning_schedule": kp.tfmot.ConstantSparsity(target_sparsity=0.5, begin_step=0, frequency=100)
}


@pytest.fixture(scope="module")
def mnist():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[..., None].astype("float32"), digits.target.astype("int32")
    split = int(0.8 * len(images))
    # Normalize the input image so that each pixel value is between 0 and 1.
    return (images[:split] / 16.0, labels[:split]), (images[split:] / 16.0, labels[split:])


@pytest.fixture(scope="module")
def trained(mnist):
    (train_images, train_labels), (test_images, test_labels) = mnist
    prune_low_magnitude = kp.tfmot.prune_low_magnitude
    keras.utils.set_random_seed(0)

    model = keras.Sequential(
        [
            prune_low_magnitude(
                keras.layers.Conv2D(
                    32,
                    5,
                    padding="same",
                    activation="relu",
                    input_shape=(8, 8, 1),
                    name="pruning_sparsity_0_5",
                ),
                **pruning_params_sparsity_0_5,
            ),
            keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            prune_low_magnitude(
                keras.layers.Conv2D(64, 5, padding="same", name="structural_pruning"),
                **pruning_params_2_by_4,
            ),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            keras.layers.Flatten(),
            prune_low_magnitude(
                keras.layers.Dense(1024, activation="relu", name="structural_pruning_dense"),
                **pruning_params_2_by_4,
            ),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(10),
        ]
    )

    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    model.summary()
    built_at_summary = model.built

    batch_size = 12
    epochs = 1

    model.fit(
        train_images,
        train_labels,
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=kp.tfmot.UpdatePruningStep(),
        validation_split=0.1,
    )

    _, pruned_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    print("Pruned test accuracy:", pruned_model_accuracy)
    return model, built_at_summary


@pytest.fixture(scope="module")
def interpreter(trained):
    model = kp.tfmot.strip_pruning(trained[0])

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tflite_model = converter.convert()

    _, tflite_file = tempfile.mkstemp(".tflite")
    with open(tflite_file, "wb") as f:
        f.write(tflite_model)

    # Load tflite file with the created pruned model
    interpreter = tf.lite.Interpreter(
        model_path=tflite_file, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    return interpreter


def test_model_summary_shows_the_built_model(trained):
    # `model.summary()` right after `compile` shows the layers with their weights: the first
    # layer's `input_shape` builds the model.
    _, built_at_summary = trained
    assert built_at_summary


def test_dense_weights_are_2_by_4_in_the_tflite_file(interpreter):
    details = interpreter.get_tensor_details()

    # Weights of the dense layer that has been pruned. (The guide found them by the tensor name
    # 'structural_pruning_dense/MatMul'; Keras 3 names TFLite tensors differently, so they are
    # found by their TFLite shape, [units, inputs].)
    detail = [x for x in details if tuple(x["shape"]) == (1024, 256)]

    # We need the first layer.
    tensor_data = interpreter.tensor(detail[0]["index"])()
    print(f"Shape of Dense layer is {tensor_data.shape}")

    # "The structure of the weight tensor is sparse in the last dimension, using the (2,4)
    # pattern: two elements out of four are zeros."
    assert is_pruned_m_by_n(tensor_data, (2, 4), "C_IN")
    assert get_sparsity(tensor_data) == pytest.approx(0.5)


def test_conv_weights_are_2_by_4_in_the_tflite_file(interpreter):
    # Get weights of the convolutional layer that has been pruned with 2 by 4 sparsity.
    op_details = interpreter._get_ops_details()
    op_name = "CONV_2D"
    op_detail = [x for x in op_details if op_name in x["op_name"]]
    tensor_data = interpreter.tensor(op_detail[1]["inputs"][1])()
    print(f"Shape of the weight tensor is {tensor_data.shape}")

    # "Similar to the weights of Dense layer, the last dimension of the kernel has a (2, 4)
    # structure."
    assert is_pruned_m_by_n(tensor_data, (2, 4), "C_IN")


def test_randomly_pruned_conv_weights_are_half_zero_but_not_2_by_4(interpreter):
    # Get weights of the convolutional layer that has been pruned with random pruning.
    op_details = interpreter._get_ops_details()
    op_detail = [x for x in op_details if "CONV_2D" in x["op_name"]]
    tensor_data = interpreter.tensor(op_detail[0]["inputs"][1])()
    print(f"Shape of the weight tensor is {tensor_data.shape}")

    # "Let's see how those randomly pruned weights look": 50% sparse, unstructured.
    assert get_sparsity(tensor_data) == pytest.approx(0.5)
