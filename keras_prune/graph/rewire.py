"""Copying a model and swapping some of its layers, through `keras.models.clone_model` only.

- `copy_model(model)`: an independent model with the same class where Keras can rebuild it
  (Sequential, Functional, and Functional subclasses such as keras-hub backbones, which rebuild
  from their own config as `.keras` loading does) and the same weights.
- `replace_layers(model, replace)`: the same graph with `replace(layer)` called in place of each
  layer (the layer itself where `replace` returns it). Operation nodes (`x + h`, `x[:, 0]`) and
  layer call arguments (several inputs, keywords) are replayed as they are; nested models are
  rebuilt recursively. The result shares the layers `replace` kept: copy first if it must not.
"""

import keras

from keras_prune.graph import tracing as trace_lib


class CannotCopy(ValueError):
    """Keras cannot rebuild the model from its config (a layer's config does not round-trip)."""


def _same_weights(model, copy):
    source, target = model.weights, copy.weights
    if len(source) != len(target) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(source, target, strict=True)
    ):
        raise CannotCopy(
            f"A copy of model {model.name!r} rebuilt from its config has different weights "
            f"({len(target)} against {len(source)}), so its weights cannot be carried over."
        )
    copy.set_weights(model.get_weights())


def copy_model(model):
    """An independent copy of a built Sequential or Functional `model` with the same weights.

    Example:

    ```python
    twin = kp.graph.copy_model(model)   # training `twin` leaves `model` as it was
    ```
    """
    try:
        if isinstance(model, keras.Sequential):
            copy = keras.models.clone_model(model)
        elif has_default_config(model):
            copy = keras.models.clone_model(model, input_tensors=_inputs_named_like(model))
        else:
            # A Functional subclass with its own config (keras-hub): rebuild it as loading does.
            copy = model.__class__.from_config(model.get_config())
    except (TypeError, ValueError, NotImplementedError, KeyError) as error:
        culprit = _first_layer_without_config(model)
        where = (
            f"layer {culprit.name!r} ({type(culprit).__name__}) cannot be rebuilt from its "
            "config; make its `get_config()` return its constructor arguments"
            if culprit is not None
            else str(error)
        )
        raise CannotCopy(
            f"Keras cannot rebuild model {model.name!r} ({type(model).__name__}) from its "
            f"config: {where}."
        ) from error
    if model.built and not copy.built:
        copy.build(tuple(model.inputs[0].shape))
    _same_weights(model, copy)
    return copy


def _first_layer_without_config(model):
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            layer.__class__.from_config(layer.get_config())
        except (TypeError, ValueError, NotImplementedError, KeyError):
            return layer
    return None


def has_default_config(model):
    """Whether `model` serializes as a plain Functional graph (its layers' own configs), rather
    than with a config of its own class (keras-hub backbones and tasks)."""
    config = model.get_config()
    return isinstance(config, dict) and "layers" in config and "input_layers" in config


def _same(layer):
    return layer


def replace_layers(model, replace):
    """`model` rebuilt with `replace(layer)` in place of every layer (nested models included).

    Example:

    ```python
    doubled = kp.graph.replace_layers(model, lambda layer: layer)  # same layers, new graph
    ```
    """
    if not trace_lib.is_graph_model(model):
        raise trace_lib.NotTraceable(
            f"Model {model.name!r} ({type(model).__name__}) is subclassed: its layers cannot be "
            "swapped."
        )

    def clone_function(operation):
        if not isinstance(operation, keras.layers.Layer) or isinstance(operation, keras.Model):
            return operation
        return replace(operation)

    if isinstance(model, keras.Sequential):
        return keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    return keras.models.clone_model(
        model,
        input_tensors=_inputs_named_like(model),
        clone_function=clone_function,
        recursive=True,
    )


def _inputs_named_like(model):
    """New inputs with the names of `model`'s input layers (clone_model would name them after
    the symbolic tensors, `keras_tensor_N`, which changes the model's config)."""
    names = {
        id(layer.output): layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }

    def like(tensor):
        return keras.Input(
            batch_shape=tuple(tensor.shape),
            dtype=tensor.dtype,
            name=names.get(id(tensor), tensor.name),
            sparse=tensor.sparse,
        )

    return keras.tree.map_structure(like, model.input)
