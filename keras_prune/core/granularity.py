"""What a mask removes at once: single weights, blocks, N of every M, or whole channels.

Structured patterns are defined on the TFLite view of a weight (rows = output channels,
columns = input channels; see `masks.to_tflite_view`), so `Block((1, 4))` on a Dense layer is the
1x4 pattern TFLite's sparse FULLY_CONNECTED kernel runs, and `NofM(2, 4)` groups four
consecutive input channels as TFLite and tfmot do.
"""

import keras
from keras import ops

from keras_prune.core import masks, registry, validation
from keras_prune.core.config_object import ConfigObject

__all__ = [
    "Block",
    "Channel",
    "Granularity",
    "NofM",
    "NotApplicable",
    "Unstructured",
    "deserialize",
    "from_tfmot_block",
    "from_tfmot_m_by_n",
    "get",
    "serialize",
]


class NotApplicable(ValueError):
    """The pattern does not apply to a weight's layout (N:M on a weight with no input-channel
    axis): the weight is left unpruned, with this message as the reason, rather than refused."""


def _positive_int(name, value):
    return validation.check_int(name, value, minimum=1)


class Granularity(ConfigObject):
    """Base class: turns per-weight scores and a sparsity into a 0/1 mask of the weight's shape."""

    #: Whether pruning a channel also zeroes its bias entry.
    masks_bias = False

    def check(self, weight):
        """Raise if this pattern cannot apply to `weight` (a `layouts.PrunableWeight`)."""

    def compute_mask(self, scores, sparsity, weight):
        """Return `(kernel_mask, bias_mask_or_None)` for `weight` given `scores` of its shape."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_prune")
class Unstructured(Granularity):
    """Prune individual weights: exactly `max(round(n * (1 - s)), 1)` survive per tensor.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.9), granularity=kp.granularity.Unstructured())
    ```
    """

    def compute_mask(self, scores, sparsity, weight):
        return masks.sparsity_mask(scores, sparsity), None


@keras.saving.register_keras_serializable(package="keras_prune")
class Block(Granularity):
    """Prune whole (rows x columns) blocks of the TFLite view, ranked by pooled score.

    Args:
        block_shape: (rows, columns); rows run over output channels, columns over input
            channels. `(1, 4)` float and `(1, 16)` int8 are what TFLite's sparse
            FULLY_CONNECTED kernels accelerate.
        pooling: "avg" or "max" of the scores inside a block.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.8), granularity=kp.granularity.Block((1, 4)))
    ```
    """

    def __init__(self, block_shape=(1, 4), pooling="avg"):
        block_shape = validation.check_pair("block_shape", block_shape, _positive_int, "(1, 4)")
        validation.check_choice("pooling", pooling, {"avg", "max"})
        self.block_shape = block_shape
        self.pooling = pooling

    def check(self, weight):
        view, _, _ = masks.to_tflite_view(
            ops.zeros(weight.variable.shape), weight.output_axis, weight.input_axis
        )
        rows, columns = ops.shape(view)
        if self.block_shape[0] > rows or self.block_shape[1] > columns:
            raise ValueError(
                f"Block shape {self.block_shape} is larger than weight {weight.name!r} "
                f"(shape {tuple(weight.variable.shape)}, TFLite view {(rows, columns)}). "
                "Use a smaller block, or leave this layer out with `filters=`."
            )

    def compute_mask(self, scores, sparsity, weight):
        view, permutation, shape = masks.to_tflite_view(
            scores, weight.output_axis, weight.input_axis
        )
        view_mask = masks.block_mask(view, sparsity, self.block_shape, self.pooling)
        return masks.from_tflite_view(view_mask, permutation, shape), None

    def get_config(self):
        return {"block_shape": list(self.block_shape), "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="keras_prune")
class NofM(Granularity):
    """Keep `n` of every `m` consecutive input channels (e.g. 2:4) in TFLite layout.

    The pattern fixes the sparsity at `1 - n / m`: the schedule decides when it is applied, not how
    much (as in tfmot's `sparsity_m_by_n`).

    Args:
        n: weights kept per group.
        m: group size; `n < m`.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), granularity=kp.granularity.NofM(2, 4))
    ```
    """

    def __init__(self, n=2, m=4):
        validation.check_int("n", n, minimum=1)
        validation.check_int("m", m, minimum=2)
        if n >= m:
            raise ValueError(
                f"Expected `n` < `m` (keep n of every m weights). Received: n={n}, m={m}. "
                "For example NofM(2, 4)."
            )
        self.n = n
        self.m = m

    @property
    def sparsity(self):
        return 1.0 - self.n / self.m

    def check(self, weight):
        # A weight with fewer than m input channels is padded, as tfmot does: its one group
        # keeps n of them.
        if weight.input_axis is None:
            raise NotApplicable(
                f"N:M groups run along input channels, and weight {weight.name!r} has no "
                "input-channel axis (a depthwise kernel or a per-channel scale), so it is left "
                "unpruned, as tfmot leaves depthwise layers."
            )

    def compute_mask(self, scores, sparsity, weight):
        view, permutation, shape = masks.to_tflite_view(
            scores, weight.output_axis, weight.input_axis
        )
        view_mask = masks.n_of_m_mask(view, self.n, self.m)
        return masks.from_tflite_view(view_mask, permutation, shape), None

    def get_config(self):
        return {"n": self.n, "m": self.m}


@keras.saving.register_keras_serializable(package="keras_prune")
class Channel(Granularity):
    """Prune whole output channels (conv filters, dense neurons), ranked by the L1/L2 norm of
    their scores; their bias entries are zeroed too, so a pruned channel outputs exactly zero
    before the activation and can be removed physically.

    In a Sequential or Functional model, channels are ranked per dependency group (see
    `kp.graph.channel_groups`), so what is masked is exactly what `kp.shrink` removes; layers whose
    channels cannot be removed (model outputs, layers the analysis does not understand) keep
    them all.

    Args:
        norm: "l2" (default) or "l1" over each channel's scores.
        only_removable: True (default) masks only channels `kp.shrink` can remove; False also
            masks, layer by layer, channels that no group can remove (useful to study the
            accuracy of channel sparsity, not to make the model smaller).

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), granularity="channel")
    ```
    """

    masks_bias = True

    def __init__(self, norm="l2", only_removable=True):
        validation.check_choice("norm", norm, {"l1", "l2"})
        if not isinstance(only_removable, bool):
            raise TypeError(
                "Expected `only_removable` to be True or False. "
                f"Received: only_removable={only_removable!r}"
            )
        self.norm = norm
        self.only_removable = only_removable

    def compute_mask(self, scores, sparsity, weight):
        return self.mask_of_kept_channels(
            scores, weight, lambda view: masks.row_mask(view, sparsity, self.norm)
        )

    def mask_of_kept_channels(self, scores, weight, choose):
        """`(kernel_mask, kept_channels)` for `weight`, where `choose(view)` returns the 0/1
        vector of kept channels (rows of the scores' one-row-per-channel view)."""
        view, permutation, shape = masks.to_tflite_view(scores, weight.output_axis, None)
        kept_channels = choose(view)
        view_mask = ops.broadcast_to(ops.expand_dims(kept_channels, 1), ops.shape(view))
        return masks.from_tflite_view(view_mask, permutation, shape), kept_channels

    def get_config(self):
        return {"norm": self.norm, "only_removable": self.only_removable}


ALIASES = {
    "unstructured": Unstructured,
    "channel": Channel,
    "block": Block,
    "2:4": lambda: NofM(2, 4),
}

REGISTRY = registry.Registry(
    "granularity",
    Granularity,
    ALIASES,
    examples="kp.granularity.Block((1, 4)), kp.granularity.NofM(2, 4), kp.granularity.Channel()",
)


def get(identifier):
    """A granularity from an instance, a name ("unstructured", "channel", "block" (1x4),
    "2:4"), `(name, {arguments})` or a serialized dict.

    Example:

    ```python
    kp.granularity.get("2:4")  # NofM(n=2, m=4)
    ```
    """
    return REGISTRY.get(identifier)


def serialize(granularity):
    """A JSON-able config of `granularity`."""
    return REGISTRY.serialize(granularity)


def deserialize(config, custom_objects=None):
    """The granularity `serialize` described."""
    return REGISTRY.deserialize(config, custom_objects)


def from_tfmot_block(block_size, block_pooling_type="AVG"):
    """The granularity tfmot's `prune_low_magnitude(block_size=..., block_pooling_type=...)`
    asks for: (1, 1) is unstructured, anything else is a `Block` with that pooling.

    tfmot's `block_size` is (rows, columns) of the Keras kernel (`[input, output]` for Dense);
    `Block` counts in TFLite's `[output, input]` layout, so the shape is transposed.

    Example:

    ```python
    kp.granularity.from_tfmot_block((4, 1), "MAX")  # Block(block_shape=(1, 4), pooling='max')
    ```
    """
    validation.check_choice("block_pooling_type", block_pooling_type, {"AVG", "MAX"})
    shape = validation.check_pair("block_size", block_size, _positive_int, "(1, 1) or (1, 4)")
    if shape == (1, 1):
        return Unstructured()
    return Block((shape[1], shape[0]), pooling=block_pooling_type.lower())


def from_tfmot_m_by_n(sparsity_m_by_n):
    """The `NofM` for tfmot's `sparsity_m_by_n=(zeros, group)`: (2, 4) keeps 2 of every 4.

    Example:

    ```python
    kp.granularity.from_tfmot_m_by_n((1, 4))  # NofM(n=3, m=4)
    ```
    """
    zeros, group = validation.check_pair(
        "sparsity_m_by_n", sparsity_m_by_n, _positive_int, "(2, 4) (zeros, group)"
    )
    if zeros >= group:
        raise ValueError(
            "Expected `sparsity_m_by_n` = (zeros, group) with zeros < group, e.g. (2, 4). "
            f"Received: sparsity_m_by_n={tuple(sparsity_m_by_n)!r}"
        )
    return NofM(group - zeros, group)
