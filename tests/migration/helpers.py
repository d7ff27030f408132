"""tfmot's test utilities, ported to Keras 3 and keras_prune names.

Sources: `tensorflow_model_optimization/python/core/sparsity/keras/test_utils.py`,
`.../core/keras/test_utils.py` and `.../sparsity/keras/pruning_utils.py` (`is_pruned_m_by_n`,
`weights_rearrange`) of tensorflow/model-optimization. Where tfmot read its wrapper's internals,
these helpers read the keras_prune counterpart named in README.md ("Names used for tfmot
internals").
"""

import os
import tempfile

import keras
import numpy as np

import keras_prune as kp

layers = keras.layers


# -- tfmot's core/keras/test_utils.py ---------------------------------------------------------


def build_simple_dense_model():
    return keras.Sequential(
        [
            layers.Dense(8, activation="relu", input_shape=(10,)),
            layers.Dense(5, activation="softmax"),
        ]
    )


def value(variable):
    """`keras.backend.get_value` (gone in Keras 3)."""
    return keras.ops.convert_to_numpy(variable)


def assert_weights_same_objects(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights, strict=True):
        assert id(w1) == id(w2)


def assert_weights_different_objects(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights, strict=True):
        assert id(w1) != id(w2)


def assert_weights_same_values(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights, strict=True):
        np.testing.assert_allclose(value(w1), value(w2), rtol=1e-6, atol=1e-6)


def assert_weights_different_values(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights, strict=True):
        assert not np.allclose(value(w1), value(w2), rtol=1e-6, atol=1e-6)


# -- tfmot's sparsity/keras/test_utils.py -----------------------------------------------------


def _build_mnist_layer_list():
    return [
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        layers.BatchNormalization(),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(10, activation="softmax"),
    ]


def _build_mnist_sequential_model():
    return keras.Sequential(_build_mnist_layer_list())


def _build_mnist_functional_model():
    inp = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    out = layers.Dense(10, activation="softmax")(x)
    return keras.models.Model([inp], [out])


def _build_mnist_layerwise_pruned_model(pruning_params):
    if pruning_params is None:
        raise ValueError("pruning_params should be provided.")
    return keras.Sequential(
        [
            kp.tfmot.prune_low_magnitude(
                layers.Conv2D(32, 5, padding="same", activation="relu"),
                input_shape=(28, 28, 1),
                **pruning_params,
            ),
            layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            layers.BatchNormalization(),
            kp.tfmot.prune_low_magnitude(
                layers.Conv2D(64, 5, padding="same", activation="relu"), **pruning_params
            ),
            layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            layers.Flatten(),
            kp.tfmot.prune_low_magnitude(layers.Dense(1024, activation="relu"), **pruning_params),
            layers.Dropout(0.4),
            kp.tfmot.prune_low_magnitude(layers.Dense(10, activation="softmax"), **pruning_params),
        ]
    )


def build_mnist_model(model_type, pruning_params=None):
    builders = {
        "sequential": _build_mnist_sequential_model,
        "functional": _build_mnist_functional_model,
        "layer_list": _build_mnist_layer_list,
        "layer_wise": lambda: _build_mnist_layerwise_pruned_model(pruning_params),
    }
    return builders[model_type]()


def model_type_keys():
    return ["sequential", "functional", "layer_list", "layer_wise"]


def save_restore_keras_model(model):
    """tfmot's `_save_restore_keras_model`, in Keras 3's `.keras` format: a compiled model
    reloaded from HDF5 cannot resume training in Keras 3 ("Unknown variable ... This optimizer
    can only be called for the variables it was originally built with"), plain models included.
    """
    keras_file = os.path.join(tempfile.mkdtemp(), "model.keras")
    keras.models.save_model(model, keras_file)
    with kp.tfmot.prune_scope():
        return keras.models.load_model(keras_file)


def get_sparsity(weights):
    return 1.0 - np.count_nonzero(weights) / float(weights.size)


def assert_model_sparsity(sparsity, model, rtol=1e-6, atol=1e-6):
    for layer in model.layers:
        if isinstance(layer, kp.PruneWrapper):
            for weight in layer.prunable_weights:
                # Argument order as tf.test's assertAllClose(expected, actual).
                np.testing.assert_allclose(
                    sparsity, get_sparsity(value(weight)), rtol=rtol, atol=atol
                )


def is_model_sparsity_not(sparsity, model):
    for layer in model.layers:
        if isinstance(layer, kp.PruneWrapper):
            for weight in layer.prunable_weights:
                if sparsity != get_sparsity(value(weight)):
                    return True
    return False


def assert_model_sparsity_m_by_n(model, m_by_n=(2, 4)):
    for layer in model.layers:
        if isinstance(layer, kp.PruneWrapper):
            for weight in layer.prunable_weights:
                assert is_pruned_m_by_n(value(weight), m_by_n=m_by_n), weight.path


# -- tfmot's pruning_utils.py (m-by-n checker) --------------------------------------------------


def weights_rearrange(weights):
    """Keras layout -> TFLite 2-D view: Dense [in, out] -> [out, in]; Conv [h, w, in, out] ->
    [out * h * w, in]. Only rank 2 and 4 (as tfmot)."""
    weights = np.asarray(weights)
    if weights.ndim == 2:
        return weights.T
    if weights.ndim == 4:
        permuted = np.transpose(weights, (3, 0, 1, 2))
        return permuted.reshape(int(np.prod(permuted.shape[:-1])), -1)
    raise ValueError(f"weight tensor with shape: {weights.shape} is not supported.")


def is_pruned_m_by_n(weights, m_by_n=(2, 4), last_channel="C_OUT"):
    """True if every group of `n` consecutive input channels has at most `n - m` non-zeros
    (`m_by_n` is tfmot's (zeros, group) pair)."""
    num_zeros, num_elem = m_by_n
    if num_zeros > num_elem:
        raise ValueError(
            f"number of zeros can't be more than number elements. received: {num_zeros} "
            f"zeros in {num_elem} elements."
        )
    num_non_zeros = num_elem - num_zeros
    weights = np.asarray(weights)
    if last_channel.endswith("C_IN"):
        prepared = weights.reshape(int(np.prod(weights.shape[:-1])), -1)
    elif last_channel.endswith("C_OUT"):
        prepared = weights_rearrange(weights)
    else:
        raise ValueError("last_channel must be `C_IN` or `C_OUT`")
    for row in range(prepared.shape[0]):
        for col in range(0, prepared.shape[1], num_elem):
            if np.count_nonzero(prepared[row, col : col + num_elem]) > num_non_zeros:
                return False
    return True


# -- names for tfmot internals (README.md, "Names used for tfmot internals") ---------------------


def granularity_for(block_size=(1, 1), block_pooling_type="AVG"):
    """The keras_prune granularity docs/migrating_from_tfmot.md maps tfmot's block arguments to:
    `block_size=(1, 1)` is unstructured, `(r, c)` is `kp.granularity.Block((c, r))` (tfmot counts on the
    Keras kernel, `kp.granularity.Block` on TFLite's transposed layout)."""
    rows, columns = block_size
    if (rows, columns) == (1, 1):
        return kp.granularity.Unstructured()
    return kp.granularity.Block((columns, rows), pooling=block_pooling_type.lower())


def nofm(m_by_n):
    """tfmot's `sparsity_m_by_n=(zeros, group)` -> `kp.granularity.NofM(group - zeros, group)`, as
    docs/migrating_from_tfmot.md maps it for `kp.prune(..., granularity=...)`."""
    zeros, group = m_by_n
    return kp.granularity.NofM(group - zeros, group)


def pruning_vars(wrapper):
    """tfmot's `wrapper.pruning_vars` ([(weight, mask, threshold)], empty until built):
    `list(zip(wrapper.prunable_weights, wrapper.masks))`, as docs/migrating_from_tfmot.md says."""
    if not wrapper.built:
        return []
    return list(zip(wrapper.prunable_weights, wrapper.masks, strict=True))


def count_pruned_layers(model):
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += count_pruned_layers(layer)
        elif isinstance(layer, kp.PruneWrapper):
            count += 1
    return count


def collect_prunable_layers(model):
    """tfmot's `pruning_wrapper.collect_prunable_layers`: the wrappers, nested models included."""
    return kp.layers.find_wrappers(model)


def batch(dims, batch_size):
    """tfmot's `_batch`: replace a leading None by `batch_size`."""
    dims = list(dims)
    if dims[0] is None:
        dims[0] = batch_size
    return dims
