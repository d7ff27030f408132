"""Port of tfmot's sparsity/keras/pruning_callbacks_test.py (UpdatePruningStep,
PruningSummaries), custom training loops included."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import build_simple_dense_model, value

BATCH_SIZE = 20

# tfmot raised tf.errors.InvalidArgumentError from a TensorFlow graph assert when the
# UpdatePruningStep callback was missing; a Keras 3 library raises a Python error instead.
MISSING_CALLBACK_ERROR = RuntimeError


def _assert_logs_exist(log_dir):
    assert os.listdir(log_dir)


def _pruned_model_setup(custom_training_loop=False):
    pruned_model = kp.tfmot.prune_low_magnitude(build_simple_dense_model())

    x_train = np.random.rand(BATCH_SIZE, 10)
    y_train = keras.utils.to_categorical(np.random.randint(5, size=(BATCH_SIZE, 1)), 5)

    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.SGD()

    if custom_training_loop:
        return pruned_model, loss, optimizer, x_train, y_train
    else:
        pruned_model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
        return pruned_model, x_train, y_train


def test_update_pruning_steps_and_logs_summaries():
    log_dir = tempfile.mkdtemp()
    pruned_model, x_train, y_train = _pruned_model_setup()
    pruned_model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=3,
        callbacks=[kp.tfmot.UpdatePruningStep(), kp.tfmot.PruningSummaries(log_dir=log_dir)],
        verbose=0,
    )

    # deliberate difference: "`wrapper.pruning_step` is the step of the last mask update (-1 before
    # the first); the current training step is `model.optimizer.iterations` (tfmot's `pruning_step`
    # counted training steps)."
    # (tfmot: `pruning_step` 3 on both layers. The default schedule updates at steps 0, 100, ...,
    # so none of the three steps updated the masks.)
    assert 3 == value(pruned_model.optimizer.iterations)
    assert -1 == value(pruned_model.layers[0].pruning_step)
    assert -1 == value(pruned_model.layers[1].pruning_step)

    _assert_logs_exist(log_dir)


def test_update_pruning_steps_and_logs_summaries_custom_training_loop():
    log_dir = tempfile.mkdtemp()
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(custom_training_loop=True)

    unused_arg = -1

    step_callback = kp.tfmot.UpdatePruningStep()
    log_callback = kp.tfmot.PruningSummaries(log_dir=log_dir)
    # TODO(tfmot): we need a separate API for custom training loops
    # that doesn't rely on users setting the model and optimizer.
    #
    # Example is currently based on callbacks.py configure_callbacks
    # and model.compile internals.
    step_callback.set_model(pruned_model)
    log_callback.set_model(pruned_model)
    pruned_model.optimizer = optimizer

    step_callback.on_train_begin()
    for _ in range(3):
        log_callback.on_epoch_begin(epoch=unused_arg)
        # only one batch given batch_size = 20 and input shape.
        step_callback.on_train_batch_begin(batch=unused_arg)
        inp = np.reshape(x_train, [BATCH_SIZE, 10])  # original shape: from [10].
        with tf.GradientTape() as tape:
            logits = pruned_model(inp, training=True)
            loss_value = loss(y_train, logits)
            grads = tape.gradient(loss_value, pruned_model.trainable_variables)
            optimizer.apply_gradients(zip(grads, pruned_model.trainable_variables, strict=True))
        step_callback.on_epoch_end(batch=unused_arg)

    # deliberate difference: "`wrapper.pruning_step` is the step of the last mask update (-1 before
    # the first); the current training step is `model.optimizer.iterations` (tfmot's `pruning_step`
    # counted training steps)."
    # (tfmot: `pruning_step` 3 on both layers; no mask update is due at steps 1-3.)
    assert 3 == value(pruned_model.optimizer.iterations)
    assert -1 == value(pruned_model.layers[0].pruning_step)
    assert -1 == value(pruned_model.layers[1].pruning_step)
    _assert_logs_exist(log_dir)


def test_update_pruning_steps_and_logs_summaries_run_inference():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)
    model_output = pruned_model(x_train)
    del model_output

    assert -1 == value(pruned_model.layers[0].pruning_step)
    assert -1 == value(pruned_model.layers[1].pruning_step)


def test_prune_training_raises_error_pruning_step_callback_missing():
    pruned_model, x_train, y_train = _pruned_model_setup()

    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(MISSING_CALLBACK_ERROR):
        pruned_model.fit(x_train, y_train, verbose=0)


def test_prune_training_loop_raises_error_pruning_step_callback_missing_custom_training_loop():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)

    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(MISSING_CALLBACK_ERROR):
        inp = np.reshape(x_train, [BATCH_SIZE, 10])  # original shape: [10].
        with tf.GradientTape():
            pruned_model(inp, training=True)


def test_pruning_summaries_raises_error_log_dir_not_non_empty_string():
    with pytest.raises(ValueError):
        kp.tfmot.PruningSummaries(log_dir="")

    # deliberate difference: "`PruningSummaries(log_dir=None)` keeps the per-layer sparsity history
    # in memory (`callback.history`) instead of refusing None; an empty string or a value that is
    # not a path is still refused with a ValueError."
    # (tfmot: `with self.assertRaises(ValueError)` for None too.)
    assert kp.tfmot.PruningSummaries(log_dir=None).history == {}

    with pytest.raises(ValueError):
        kp.tfmot.PruningSummaries(log_dir=object())
