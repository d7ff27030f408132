"""tfmot's entry points, with tfmot's arguments: `prune_low_magnitude` and `strip_pruning`."""

import keras

from keras_prune.core import granularity as granularity_lib
from keras_prune.core import validation
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper
from keras_prune.pruning.prune_strip import prune, strip

_ARGUMENTS = (
    "pruning_schedule",
    "block_size",
    "block_pooling_type",
    "pruning_policy",
    "sparsity_m_by_n",
    "filters",
)


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    **kwargs,
):
    """tfmot's entry point, with tfmot's arguments: magnitude pruning of a model, a layer or a
    list of layers.

    Args:
        to_prune: a model, a layer or a list of layers.
        pruning_schedule: a `kp.PruningSchedule` (default `ConstantSparsity(0.5, 0)`).
        block_size: tfmot's block on the Keras kernel (`[input, output]` for Dense); (1, 1) is
            unstructured.
        block_pooling_type: "AVG" or "MAX".
        pruning_policy: a policy with a `filters(model)` method choosing the layers to prune,
            e.g. `kp.tfmot.PruneForLatencyOnXNNPack()`.
        sparsity_m_by_n: tfmot's `(zeros, group)` pair, e.g. (2, 4) keeps 2 of every 4.
        **kwargs: for a layer, base layer arguments of the wrapper (`input_shape=`, `name=`);
            for a model, `kp.prune`'s `filters=`.

    Example:

    ```python
    pruned = kp.tfmot.prune_low_magnitude(model, pruning_schedule=kp.tfmot.ConstantSparsity(0.5, 0))
    ```
    """
    if not isinstance(to_prune, (keras.layers.Layer, list, tuple)):
        raise TypeError(
            "Expected `to_prune` to be a keras.Model, a keras.layers.Layer or a list of layers. "
            f"Received: to_prune={to_prune!r} (of type {type(to_prune).__name__})"
        )
    if pruning_policy is not None and not callable(getattr(pruning_policy, "filters", None)):
        raise TypeError(
            "Expected `pruning_policy` to be None or a policy such as "
            "kp.tfmot.PruneForLatencyOnXNNPack() (an object with a `filters(model)` method). "
            f"Received: pruning_policy={pruning_policy!r}"
        )
    granularity = granularity_lib.from_tfmot_block(block_size, block_pooling_type)
    if sparsity_m_by_n is not None:
        granularity = granularity_lib.from_tfmot_m_by_n(sparsity_m_by_n)
    if isinstance(to_prune, keras.Model):
        unknown = set(kwargs) - {"filters"}
        if unknown:
            raise TypeError(
                f"prune_low_magnitude(model, ...) got unexpected arguments {sorted(unknown)}; "
                "for a model only `filters=` is accepted (layer arguments go to layers)."
                + validation.did_you_mean(sorted(unknown)[0], _ARGUMENTS)
            )
        if pruning_policy is not None:
            kwargs["filters"] = pruning_policy.filters(to_prune)
        # tfmot prunes every tensor to the scheduled sparsity: no global ranking.
        return prune(
            to_prune,
            schedule=pruning_schedule,
            granularity=granularity,
            allocation="per_layer",
            **kwargs,
        )
    if isinstance(to_prune, (list, tuple)):
        return [
            prune_low_magnitude(
                layer,
                pruning_schedule,
                block_size,
                block_pooling_type,
                None,
                sparsity_m_by_n,
                **kwargs,
            )
            for layer in to_prune
        ]
    if not isinstance(to_prune, keras.layers.Layer):
        return prune(to_prune)  # refuses with the error naming what it accepts
    layouts.check_wrappable(to_prune, unbuilt_custom=True)
    return PruneWrapper(to_prune, schedule=pruning_schedule, granularity=granularity, **kwargs)


def strip_pruning(model):
    """tfmot-compatible name for `strip`."""
    return strip(model)
