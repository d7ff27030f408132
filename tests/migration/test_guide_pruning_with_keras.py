"""tfmot's guide "Magnitude-based weight pruning with Keras"
(g3doc/guide/pruning/pruning_with_keras.ipynb), run with keras_prune's names.

Offline and small: MNIST (28x28) is replaced by scikit-learn's bundled digits (8x8), the
baseline trains one epoch instead of four, and the fine-tuning batch size is 12 instead of 128 so
that the guide's schedule (PolynomialDecay(0.5 -> 0.8) with the default frequency=100, ending
after two epochs: 216 steps on 1437 training images) still updates the masks at step 200, close
to its end, as it does on MNIST (step 800 of 844). Every other line is
the guide's, with `tfmot.sparsity.keras.X` -> `kp.X` and `tf.keras` -> `keras`.

The guide prints its results; the assertions are the guide's claims: the model ends at 80%
sparsity, `strip_pruning` leaves a plain model with the same outputs whose compressed file is
smaller, and the TFLite accuracy persists.
"""

import os
import tempfile
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import get_sparsity, value

# Trains for 270 steps and converts twice to TFLite: 8-15 s.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype("float32"), digits.target.astype("int32")
    split = int(0.8 * len(images))
    # Normalize the input image so that each pixel value is between 0 and 1.
    return (images[:split] / 16.0, labels[:split]), (images[split:] / 16.0, labels[split:])


@pytest.fixture(scope="module")
def baseline(mnist):
    (train_images, train_labels), (test_images, test_labels) = mnist
    keras.utils.set_random_seed(0)

    # Define the model architecture.
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=(8, 8)),
            keras.layers.Reshape(target_shape=(8, 8, 1)),
            keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )

    # Train the digit classification model
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    model.fit(train_images, train_labels, epochs=1, validation_split=0.1, verbose=0)

    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)

    _, keras_file = tempfile.mkstemp(".h5")
    keras.models.save_model(model, keras_file, include_optimizer=False)
    return model, baseline_model_accuracy, keras_file


@pytest.fixture(scope="module")
def fine_tuned(mnist, baseline):
    (train_images, train_labels), (test_images, test_labels) = mnist
    model, _, _ = baseline

    prune_low_magnitude = kp.tfmot.prune_low_magnitude

    # Compute end step to finish pruning after 2 epochs.
    batch_size = 12
    epochs = 2
    validation_split = 0.1  # 10% of training set will be used for validation set.

    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs

    # Define model for pruning.
    pruning_params = {
        "pruning_schedule": kp.tfmot.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step
        )
    }

    model_for_pruning = prune_low_magnitude(model, **pruning_params)

    # `prune_low_magnitude` requires a recompile.
    model_for_pruning.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    model_for_pruning.summary()

    logdir = tempfile.mkdtemp()

    callbacks = [
        kp.tfmot.UpdatePruningStep(),
        kp.tfmot.PruningSummaries(log_dir=logdir),
    ]

    model_for_pruning.fit(
        train_images,
        train_labels,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=validation_split,
        callbacks=callbacks,
        verbose=0,
    )

    _, model_for_pruning_accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)
    return model_for_pruning, model_for_pruning_accuracy, logdir


def get_gzipped_model_size(file):
    # Returns size of gzipped model, in bytes.
    _, zipped_file = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(file)

    return os.path.getsize(zipped_file)


def test_fine_tuning_ends_at_the_final_sparsity_with_logs(fine_tuned):
    model_for_pruning, _, logdir = fine_tuned
    wrappers = [layer for layer in model_for_pruning.layers if isinstance(layer, kp.PruneWrapper)]
    assert [type(w.layer).__name__ for w in wrappers] == ["Conv2D", "Dense"]
    for wrapper in wrappers:
        for weight in wrapper.prunable_weights:
            # "you start the model with 50% sparsity (50% zeros in weights) and end with 80%"
            # (108 conv weights: 80% is not a whole count).
            np.testing.assert_allclose(get_sparsity(value(weight)), 0.8, atol=0.01)
    # "The logs show the progression of sparsity on a per-layer basis."
    assert os.listdir(logdir)


def test_strip_pruning_gives_smaller_compressed_models(fine_tuned, baseline, mnist):
    model_for_pruning, _, _ = fine_tuned
    _, _, keras_file = baseline
    _, (test_images, _) = mnist

    model_for_export = kp.tfmot.strip_pruning(model_for_pruning)
    assert not any(isinstance(layer, kp.PruneWrapper) for layer in model_for_export.layers)
    np.testing.assert_allclose(
        model_for_export.predict(test_images, verbose=0),
        model_for_pruning.predict(test_images, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )

    _, pruned_keras_file = tempfile.mkstemp(".h5")
    keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    pruned_tflite_model = converter.convert()

    _, pruned_tflite_file = tempfile.mkstemp(".tflite")
    with open(pruned_tflite_file, "wb") as f:
        f.write(pruned_tflite_model)

    # "Compare and see that the models are 3x smaller from pruning." (Not 3x for a model of
    # 1,200 weights, whose files are mostly metadata; smaller.)
    assert get_gzipped_model_size(pruned_keras_file) < get_gzipped_model_size(keras_file)
    assert get_gzipped_model_size(pruned_tflite_file) < get_gzipped_model_size(keras_file)


def test_quantized_tflite_accuracy_persists(fine_tuned, mnist):
    model_for_pruning, model_for_pruning_accuracy, _ = fine_tuned
    _, (test_images, test_labels) = mnist
    model_for_export = kp.tfmot.strip_pruning(model_for_pruning)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_and_pruned_tflite_model = converter.convert()

    def evaluate_model(interpreter):
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]

        # Run predictions on every image in the "test" dataset.
        prediction_digits = []
        for test_image in test_images:
            # Pre-processing: add batch dimension and convert to float32 to match with
            # the model's input data format.
            test_image = np.expand_dims(test_image, axis=0).astype(np.float32)
            interpreter.set_tensor(input_index, test_image)

            # Run inference.
            interpreter.invoke()

            # Post-processing: remove batch dimension and find the digit with highest
            # probability.
            output = interpreter.tensor(output_index)
            digit = np.argmax(output()[0])
            prediction_digits.append(digit)

        # Compare prediction results with ground truth labels to calculate accuracy.
        prediction_digits = np.array(prediction_digits)
        accuracy = (prediction_digits == test_labels).mean()
        return accuracy

    interpreter = tf.lite.Interpreter(model_content=quantized_and_pruned_tflite_model)
    interpreter.allocate_tensors()

    test_accuracy = evaluate_model(interpreter)

    # "the accuracy from TensorFlow persists to the TFLite backend"
    assert abs(test_accuracy - model_for_pruning_accuracy) <= 0.02
