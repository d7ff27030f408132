"""tfmot's "Pruning comprehensive guide" (g3doc/guide/pruning/comprehensive_guide.ipynb), one
test per section, run with keras_prune's names (`tfmot.sparsity.keras.X` -> `kp.X`,
`tf_keras` -> `keras`).

The guide's data is already random and tiny (one sample). Keras 3 mechanics: weights files end in
`.weights.h5` (the guide's `.tf` checkpoint format does not exist in Keras 3). The guide prints
summaries; the assertions are what each section says happens.
"""

import os
import tempfile
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

input_shape = [20]
x_train = np.random.randn(1, 20).astype(np.float32)
y_train = keras.utils.to_categorical(np.random.randn(1), num_classes=20)


def setup_model():
    model = keras.Sequential(
        [keras.layers.Dense(20, input_shape=input_shape), keras.layers.Flatten()]
    )
    return model


@pytest.fixture(scope="module")
def pretrained_weights():
    model = setup_model()

    model.compile(
        loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"]
    )

    model.fit(x_train, y_train, verbose=0)

    pretrained_weights = os.path.join(tempfile.mkdtemp(), "pretrained.weights.h5")

    model.save_weights(pretrained_weights)

    return pretrained_weights


def get_gzipped_model_size(model):
    # Returns size of gzipped model, in bytes.
    _, keras_file = tempfile.mkstemp(".h5")
    model.save(keras_file, include_optimizer=False)

    _, zipped_file = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(keras_file)

    return os.path.getsize(zipped_file)


def _wrappers(model):
    return [layer for layer in model.layers if isinstance(layer, kp.PruneWrapper)]


# -- Define model ------------------------------------------------------------------------------


def test_prune_whole_model(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended.

    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model)

    model_for_pruning.summary()
    assert len(_wrappers(model_for_pruning)) == 1


def test_prune_some_layers_with_clone_model(pretrained_weights):
    # Create a base model
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended for model accuracy

    # Helper function uses `prune_low_magnitude` to make only the
    # Dense layers train with pruning.
    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return kp.tfmot.prune_low_magnitude(layer)
        return layer

    # Use `keras.models.clone_model` to apply `apply_pruning_to_dense`
    # to the layers of the model.
    model_for_pruning = keras.models.clone_model(
        base_model,
        clone_function=apply_pruning_to_dense,
    )

    model_for_pruning.summary()
    assert len(_wrappers(model_for_pruning)) == 1

    # "the easiest way to prune a particular layer is to set its `name` property, and look for
    # that name in the `clone_function`."
    print(base_model.layers[0].name)


def test_functional_example():
    # Use `prune_low_magnitude` to make the `Dense` layer train with pruning.
    i = keras.Input(shape=(20,))
    x = kp.tfmot.prune_low_magnitude(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    model_for_pruning = keras.Model(inputs=i, outputs=o)

    model_for_pruning.summary()
    assert len(_wrappers(model_for_pruning)) == 1


def test_sequential_example():
    # Use `prune_low_magnitude` to make the `Dense` layer train with pruning.
    model_for_pruning = keras.Sequential(
        [
            kp.tfmot.prune_low_magnitude(keras.layers.Dense(20, input_shape=input_shape)),
            keras.layers.Flatten(),
        ]
    )

    model_for_pruning.summary()
    # The summary the guide shows has the model's weights: the wrapped first layer's
    # `input_shape` builds the model.
    assert model_for_pruning.built


def test_prune_custom_keras_layer():
    class MyDenseLayer(keras.layers.Dense, kp.tfmot.PrunableLayer):
        def get_prunable_weights(self):
            # Prune bias also, though that usually harms model accuracy too much.
            return [self.kernel, self.bias]

    # Use `prune_low_magnitude` to make the `MyDenseLayer` layer train with pruning.
    model_for_pruning = keras.Sequential(
        [
            kp.tfmot.prune_low_magnitude(MyDenseLayer(20, input_shape=input_shape)),
            keras.layers.Flatten(),
        ]
    )

    model_for_pruning.summary()
    assert model_for_pruning.built
    assert len(_wrappers(model_for_pruning)[0].prunable_weights) == 2


# -- Train model -------------------------------------------------------------------------------


def test_model_fit(pretrained_weights):
    # Define the model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended for model accuracy
    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model)

    log_dir = tempfile.mkdtemp()
    callbacks = [
        kp.tfmot.UpdatePruningStep(),
        # Log sparsity and other metrics in Tensorboard.
        kp.tfmot.PruningSummaries(log_dir=log_dir),
    ]

    model_for_pruning.compile(
        loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"]
    )

    model_for_pruning.fit(x_train, y_train, callbacks=callbacks, epochs=2, verbose=0)

    assert os.listdir(log_dir)


def test_custom_training_loop(pretrained_weights):
    # Define the model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended for model accuracy
    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model)

    # Boilerplate
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    log_dir = tempfile.mkdtemp()
    unused_arg = -1
    epochs = 2
    batches = 1  # example is hardcoded so that the number of batches cannot change.

    # Non-boilerplate.
    model_for_pruning.optimizer = optimizer
    step_callback = kp.tfmot.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    # Log sparsity and other metrics in Tensorboard.
    log_callback = kp.tfmot.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()  # run pruning callback
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)  # run pruning callback
        for _ in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)  # run pruning callback

            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(
                    zip(grads, model_for_pruning.trainable_variables, strict=True)
                )

        step_callback.on_epoch_end(batch=unused_arg)  # run pruning callback

    assert os.listdir(log_dir)


# -- Checkpoint and deserialize ----------------------------------------------------------------


def test_checkpoint_and_deserialize(pretrained_weights):
    # Define the model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended for model accuracy
    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model)

    _, keras_model_file = tempfile.mkstemp(".h5")

    # Checkpoint: saving the optimizer is necessary (include_optimizer=True is the default).
    model_for_pruning.save(keras_model_file, include_optimizer=True)

    # Deserialize model.
    with kp.tfmot.prune_scope():
        loaded_model = keras.models.load_model(keras_model_file)

    loaded_model.summary()
    assert len(_wrappers(loaded_model)) == 1


# -- Deploy pruned model -----------------------------------------------------------------------


def test_export_model_with_size_compression(pretrained_weights):
    # Define the model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended for model accuracy
    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model)

    # Typically you train the model here.

    model_for_export = kp.tfmot.strip_pruning(model_for_pruning)

    print("final model")
    model_for_export.summary()

    assert not _wrappers(model_for_export)
    # "Size of gzipped pruned model without stripping" vs "with stripping".
    assert get_gzipped_model_size(model_for_export) < get_gzipped_model_size(model_for_pruning)


def test_block_sparsity():
    base_model = setup_model()

    # For using intrinsics on a CPU with 128-bit registers, together with 8-bit
    # quantized weights, a 1x16 block size is nice because the block perfectly
    # fits into the register.
    pruning_params = {"block_size": [1, 16]}
    model_for_pruning = kp.tfmot.prune_low_magnitude(base_model, **pruning_params)

    model_for_pruning.summary()
    assert len(_wrappers(model_for_pruning)) == 1
