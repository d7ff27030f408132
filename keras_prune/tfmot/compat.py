"""tfmot's helper names, so migrating code keeps working.

- `PrunableLayer`: the protocol base class for custom layers (`get_prunable_weights()`).
- `prune_scope()`: tfmot needed it to load pruned models; keras_prune's classes are registered
  with Keras, so loading works without it. It is kept as a context manager that does nothing.
"""

import abc
import contextlib

import keras

from keras_prune.export import policy


class PrunableLayer(abc.ABC):
    """Mixin for custom layers that say which of their weights to prune (tfmot's protocol).

    Any layer with a `get_prunable_weights()` method is prunable; inheriting from this class
    only documents it and makes forgetting the method an error.

    Example:

    ```python
    class MyDense(keras.layers.Dense, kp.tfmot.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The Keras variables to prune."""


@contextlib.contextmanager
def prune_scope():
    """tfmot's scope for loading pruned models; not needed with keras_prune (its classes are
    registered with Keras), kept so migrating code runs unchanged.

    Example:

    ```python
    pruned.save("pruned.keras")
    with kp.tfmot.prune_scope():
        model = keras.saving.load_model("pruned.keras")
    ```
    """
    yield


class PruneForLatencyOnXNNPack:
    """tfmot's pruning policy: check that the model has a region XNNPACK runs sparse, and
    prune only its 1x1 `Conv2D` layers.

    Pass it as `kp.tfmot.prune_low_magnitude(model, pruning_policy=PruneForLatencyOnXNNPack())`;
    `filters(model)` raises a ValueError naming what is missing when the model does not qualify
    (see `kp.export.check_xnnpack_sparse_model`).

    Example:

    ```python
    model = keras.Sequential([  # the stem XNNPACK's sparse inference needs
        keras.Input((32, 32, 3)),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(16, 3, strides=2),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    policy = kp.tfmot.PruneForLatencyOnXNNPack()
    pruned = kp.prune(model, filters=policy.filters(model))
    ```
    """

    def allow_pruning(self, layer):
        """Only 1x1 Conv2D layers are pruned."""
        return isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)

    def ensure_model_supports_pruning(self, model):
        policy.check_xnnpack_sparse_model(model)

    def filters(self, model):
        """The `filters=` predicate for `kp.prune`, after checking `model`."""
        self.ensure_model_supports_pruning(model)
        return self.allow_pruning
