"""Port of tfmot's sparsity/keras/prune_distributed_test.py (pruning under tf.distribute)."""

import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp

from .helpers import assert_model_sparsity, build_simple_dense_model

STRATEGIES = {
    "MultiWorkerMirroredStrategy": lambda: tf.distribute.MultiWorkerMirroredStrategy(),
    "MirroredStrategy": lambda: tf.distribute.MirroredStrategy(),
    # TODO(pulkitb): Add parameter_server
    "OneDeviceStrategy": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
}

PARAMS = {
    "pruning_schedule": kp.tfmot.ConstantSparsity(0.5, 0, -1, 1),
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
}


@pytest.mark.parametrize(
    "strategy",
    [
        # Starting a (one-worker) collective runtime takes a few seconds.
        pytest.param("MultiWorkerMirroredStrategy", marks=pytest.mark.slow),
        "MirroredStrategy",
        "OneDeviceStrategy",
    ],
)
def test_prunes_simple_dense_model(strategy):
    distribution = STRATEGIES[strategy]()
    with distribution.scope():
        model = kp.tfmot.prune_low_magnitude(build_simple_dense_model(), **PARAMS)
        model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])

    # Model hasn't been trained yet. Sparsity 0.0
    assert_model_sparsity(0.0, model)

    # Simple unpruned model. No sparsity.
    model.fit(
        np.random.rand(20, 10),
        keras.utils.to_categorical(np.random.randint(5, size=(20, 1)), 5),
        epochs=2,
        callbacks=[kp.tfmot.UpdatePruningStep()],
        batch_size=20,
        verbose=0,
    )
    model.predict(np.random.rand(20, 10), verbose=0)
    assert_model_sparsity(0.5, model)

    _, keras_file = tempfile.mkstemp(".h5")
    keras.models.save_model(model, keras_file)

    # tfmot loaded inside `prune_scope()`; keras_prune's classes are registered with Keras.
    loaded_model = keras.models.load_model(keras_file)

    assert_model_sparsity(0.5, loaded_model)
