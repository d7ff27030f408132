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
    "ByLayer",
    "Channel",
    "Granularity",
    "NofM",
    "NotApplicable",
    "Unstructured",
    "deserialize",
    "from_tfmot_block",
    "from_tfmot_m_by_n",
    "get",
    "mobile",
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
    #: How many consecutive input channels the pattern groups (1x4 blocks: 4, N:M: M, else 1):
    #: input channels removed later (`kp.shrink`) must go in whole aligned groups of this size.
    input_group_size = 1

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

    def compute_mask(self, scores, sparsity, weight, nonnegative=False):
        """As `Granularity.compute_mask`; `nonnegative=True` promises scores >= 0 (magnitudes),
        which ranks them with fewer passes (`kp.masks.top_k_mask`)."""
        return masks.sparsity_mask(scores, sparsity, nonnegative), None


@keras.saving.register_keras_serializable(package="keras_prune")
class Block(Granularity):
    """Prune whole (rows x columns) blocks of the TFLite view, ranked by pooled score.

    Args:
        block_shape: (rows, columns); rows run over output channels, columns over input
            channels. `(1, 4)` float and `(1, 16)` int8 are what TFLite's sparse
            FULLY_CONNECTED kernels accelerate.
        pooling: "avg" or "max" of the scores inside a block.
        partial_blocks: what to do with a weight the blocks do not tile (a Dense whose input
            width is not a multiple of 4 for `(1, 4)`): "pool" (default, as tfmot) prunes the
            edge blocks over what they hold; "skip" leaves the weight unpruned, with the reason.
            The TFLite converter cannot encode partial blocks (its file does not load), so
            "skip" is what an export to LiteRT's sparse kernels needs.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.8), granularity=kp.granularity.Block((1, 4)))
    ```
    """

    def __init__(self, block_shape=(1, 4), pooling="avg", partial_blocks="pool"):
        block_shape = validation.check_pair("block_shape", block_shape, _positive_int, "(1, 4)")
        validation.check_choice("pooling", pooling, {"avg", "max"})
        validation.check_choice("partial_blocks", partial_blocks, {"pool", "skip"})
        self.block_shape = block_shape
        self.pooling = pooling
        self.partial_blocks = partial_blocks

    @property
    def input_group_size(self):
        """Input channels per block (see `Granularity.input_group_size`)."""
        return self.block_shape[1]

    def check(self, weight):
        view, _, _ = masks.to_tflite_view(
            ops.zeros(weight.variable.shape), weight.output_axis, weight.input_axis
        )
        rows, columns = ops.shape(view)
        if self.partial_blocks == "skip" and (
            rows % self.block_shape[0] or columns % self.block_shape[1]
        ):
            raise NotApplicable(
                f"{self.block_shape[0]}x{self.block_shape[1]} blocks do not tile weight "
                f"{weight.name!r} (TFLite view {(rows, columns)}: rows = outputs, columns = "
                "inputs), and the TFLite converter cannot encode partial blocks, so it is left "
                "unpruned"
            )
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
        return {
            "block_shape": list(self.block_shape),
            "pooling": self.pooling,
            "partial_blocks": self.partial_blocks,
        }


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

    @property
    def input_group_size(self):
        """`m`: the pattern groups `m` consecutive input channels."""
        return self.m

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


FULLY_CONNECTED = (keras.layers.Dense, keras.layers.EinsumDense)
CONVOLUTION = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
KINDS = ("fully_connected", "convolution", "other")


def _optional(name, value):
    if value is None:
        return None
    try:
        found = get(value)
    except ValueError as error:
        # The registry's message names `granularity`; the user passed `name`.
        message = str(error).replace("Received: granularity=", f"Received: {name}=")
        raise ValueError(f"{message} (None leaves this kind of layer unpruned.)") from None
    if isinstance(found, ByLayer):
        raise ValueError(
            f"Expected `{name}` to be one granularity (e.g. kp.granularity.Block((1, 4))) or "
            f"None. Received: {name}={value!r}, which chooses per layer itself."
        )
    return found


@keras.saving.register_keras_serializable(package="keras_prune")
class ByLayer(Granularity):
    """A granularity per kind of layer: `kp.prune` gives every wrapper the one for its layer.

    Kinds: fully connected (Dense, EinsumDense), convolution (Conv1D/2D/3D, their transposes,
    DepthwiseConv, SeparableConv; 1x1 convolutions too: LiteRT has no sparse CONV_2D kernel, so
    only removing their channels makes them faster) and other (Embedding, attention, recurrent
    and custom layers). A BatchNormalization follows its channel group when a kind is pruned
    by `Channel`. The allocation `kp.prune` declares by default is per layer (a global ranking
    only when every kind is `Unstructured`).

    The preset `granularity="mobile"` is `ByLayer(Block((1, 4), partial_blocks="skip"),
    Channel(), None)`: 1x4 blocks on fully-connected weights (LiteRT's sparse float
    FULLY_CONNECTED kernel runs them) and channels on convolutions (removed by `kp.shrink`: a
    smaller dense model). Channels feeding a block-pruned layer (the last convolution before
    the first Dense) are removed in aligned runs of 4, so that its blocks stay whole. `kp.prune`
    leaves unpruned, each with the reason in its report: convolutions whose channels cannot be
    removed (or whose runs of 4 would not line up with the blocks) and fully-connected layers
    whose input width is not a multiple of 4.

    Args:
        fully_connected: the granularity of Dense and EinsumDense layers, or None to leave them
            unpruned.
        convolution: the granularity of convolutions, or None.
        other: the granularity of every other prunable layer, or None.

    Each takes what `granularity=` takes: a name, an instance or a config.

    Example:

    ```python
    pruned = kp.prune(model, granularity="mobile")
    [(w.name, type(w.granularity).__name__) for w in kp.layers.find_wrappers(pruned)]
    mixed = kp.granularity.ByLayer(fully_connected="2:4", convolution="unstructured")
    ```
    """

    def __init__(
        self, fully_connected="unstructured", convolution="unstructured", other="unstructured"
    ):
        self.fully_connected = _optional("fully_connected", fully_connected)
        self.convolution = _optional("convolution", convolution)
        self.other = _optional("other", other)
        if not self.granularities():
            raise ValueError(
                "Expected a granularity for at least one kind of layer. Received: "
                "fully_connected=None, convolution=None, other=None."
            )

    @staticmethod
    def kind(layer):
        """ "fully_connected", "convolution" or "other": which argument applies to `layer`."""
        if isinstance(layer, FULLY_CONNECTED):
            return "fully_connected"
        if isinstance(layer, CONVOLUTION):
            return "convolution"
        return "other"

    def for_layer(self, layer):
        """The granularity of `layer`, or None if its kind is left unpruned."""
        return getattr(self, self.kind(layer))

    def granularities(self):
        """The granularities in use (None left out)."""
        return [g for g in (getattr(self, kind) for kind in KINDS) if g is not None]

    @property
    def channel(self):
        """The `Channel` granularity among the kinds (BatchNormalizations follow it), or None."""
        return next((g for g in self.granularities() if isinstance(g, Channel)), None)

    def compute_mask(self, scores, sparsity, weight):
        raise TypeError(
            f"ByLayer chooses a granularity per layer and computes no mask itself; weight "
            f"{weight.name!r} is pruned by the granularity `kp.prune` chose for its layer."
        )

    def get_config(self):
        return {
            kind: None if getattr(self, kind) is None else serialize(getattr(self, kind))
            for kind in KINDS
        }


def mobile():
    """The preset `granularity="mobile"`: 1x4 blocks on fully-connected weights, channels on
    convolutions, other layers unpruned (see `ByLayer`).

    Example:

    ```python
    kp.granularity.mobile() == kp.granularity.get("mobile")  # True
    ```
    """
    return ByLayer(
        fully_connected=Block((1, 4), partial_blocks="skip"), convolution=Channel(), other=None
    )


ALIASES = {
    "unstructured": Unstructured,
    "channel": Channel,
    "block": Block,
    "2:4": lambda: NofM(2, 4),
    "mobile": mobile,
}

REGISTRY = registry.Registry(
    "granularity",
    Granularity,
    ALIASES,
    examples="kp.granularity.Block((1, 4)), kp.granularity.NofM(2, 4), kp.granularity.Channel()",
)


def get(identifier):
    """A granularity from an instance, a name ("unstructured", "channel", "block" (1x4),
    "2:4", "mobile" (see `mobile`)), `(name, {arguments})` or a serialized dict.

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
