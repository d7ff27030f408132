"""How a mask is held during training: fixed binary masks, or masks learnt from trainable scores.

- `BinaryMask`: 0/1 non-trainable masks recomputed from importance scores when the schedule says
  so; masked weights are held at exactly zero after every optimizer step.
- `LearnableMask`: trainable scores; the forward pass keeps the top-scored weights at the scheduled
  sparsity and passes gradients straight through to the scores (movement pruning, Sanh et al.
  2020: the scores' gradient is `dL/dW' * W`).
- `SigmoidGateMask`: like `LearnableMask`, but surviving weights are scaled by a soft gate
  `sigmoid(score / temperature)` that the gradient shapes too.

Learnable masks choose their top-k again either at each mask update of the schedule
(`reselect="schedule"`, the default: the mask engine selects and stores the hard mask, which is
fixed until the next update) or in the forward pass of every step (`reselect="step"`, Sanh et
al.'s rule, at the cost of a top-k per step). The scores learn at every step either way.
"""

import keras
from keras import ops

from keras_prune.core import registry, validation
from keras_prune.core.config_object import ConfigObject

__all__ = [
    "BinaryMask",
    "LearnableMask",
    "MaskType",
    "SigmoidGateMask",
    "deserialize",
    "get",
    "serialize",
]


RESELECT = ("schedule", "step")


class MaskType(ConfigObject):
    """Base class. `learnable` mask types own trainable scores and mask in the forward pass."""

    learnable = False
    # When a learnable mask selects its top-k: "schedule" (stored by the mask engine at each
    # update) or "step" (in every forward pass).
    reselect = "schedule"

    def initial_scores(self, weight_value):
        """Initial trainable scores for a weight (learnable masks only)."""
        raise NotImplementedError

    def forward_mask(self, hard_mask, scores):
        """Differentiable mask used in the forward pass, given the hard top-k mask of `scores`."""
        raise NotImplementedError

    def masked_weight(self, weight, hard_mask, scores):
        """The weight as the forward pass sees it: `weight * forward_mask(hard_mask, scores)`,
        differentiable in `weight` and `scores`. A subclass may compute the same value and
        gradients more cheaply."""
        mask = self.forward_mask(hard_mask, scores)
        return weight * ops.cast(mask, weight.dtype)


def _same_dtype(scores, hard_mask):
    """Scores as the forward pass reads them, and the hard mask in their dtype: under a mixed
    precision policy Keras reads the scores in float16 / bfloat16 while the top-k mask computed
    from them is float32, and the backends refuse to add the two."""
    scores = ops.convert_to_tensor(scores)
    return scores, ops.cast(hard_mask, scores.dtype)


def _check_reselect(reselect):
    return validation.check_choice("reselect", reselect, RESELECT)


class _Reselecting(MaskType):
    """Config shared by the learnable mask types: `reselect`, and "step" for configs saved
    before it existed (their forward pass selected at every step)."""

    def get_config(self):
        return {"reselect": self.reselect}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("reselect", "step")
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_prune")
class BinaryMask(MaskType):
    """Non-trainable 0/1 masks from importance scores (magnitude by default).

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.8), mask=kp.mask_types.BinaryMask())  # or
    mask="binary"
    ```
    """


@keras.saving.register_keras_serializable(package="keras_prune")
class LearnableMask(_Reselecting):
    """Top-k of trainable scores with a straight-through estimator (movement pruning).

    Scores start at |w| so training begins from the magnitude mask; weights outside the top-k
    keep their values and may come back if their scores grow. Every step, every score (kept or
    not) receives the straight-through gradient `dL/dW' * W`.

    When the top-k is chosen again differs from Sanh et al. (2020) by default:

    - `reselect="schedule"` (default): at each mask update of the schedule (every `frequency`
      steps from `begin_step` to `end_step`) the mask engine keeps the top-k of the current
      scores and stores that hard mask; between updates the forward pass uses it as it is.
      After the schedule's last update the mask stays fixed, as a binary mask does. A step
      costs the multiply by the mask and the scores' gradient and optimizer update (1.05-1.2x
      the dense epoch on convolutional models, 1.5-1.7x CPU on an FC-heavy MLP at batch 32,
      where the optimizer's update of as many scores as weights dominates:
      docs/performance.md).
    - `reselect="step"`: the forward pass keeps the top-k of the current scores at every step,
      also after the schedule ends (Sanh et al.'s rule). This is a top-k over every pruned
      tensor per step: 2-3.5x the dense epoch. With a schedule of `frequency=1` the two are
      the same until `end_step`. At high sparsity with a coarse `frequency` the default
      learns less well (docs/methods.md): use `frequency=10` or finer, or "step".

    Args:
        reselect: "schedule" or "step" (above).

    Example:

    ```python
    kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.9, 0, 1000, frequency=10),
             mask="learnable")  # or mask=kp.mask_types.LearnableMask(reselect="step")
    ```
    """

    learnable = True

    def __init__(self, reselect="schedule"):
        self.reselect = _check_reselect(reselect)

    def initial_scores(self, weight_value):
        return ops.abs(weight_value)

    def forward_mask(self, hard_mask, scores):
        # Forward: the hard mask, exactly (the bracket is exactly zero; `(hard + scores) -
        # scores` would round a kept 1 to 0.99999994). Backward: d mask / d scores = 1.
        scores, hard_mask = _same_dtype(scores, hard_mask)
        return hard_mask + (scores - ops.stop_gradient(scores))

    def masked_weight(self, weight, hard_mask, scores):
        # The value and gradients of `weight * forward_mask(hard_mask, scores)`, written out: the
        # forward pass is one multiply instead of three elementwise passes, and the backward
        # pass two (`g * hard` into the weight, `g * weight` into the scores) instead of the
        # chain through the straight-through bracket.
        # Read the variables into tensors first (a reshape to the same shape copies nothing):
        # TensorFlow's custom gradient refuses a function that reads a variable inside.
        weight = ops.reshape(weight, ops.shape(weight))
        scores = ops.reshape(scores, ops.shape(scores))
        hard_mask = ops.cast(hard_mask, weight.dtype)

        @ops.custom_gradient
        def straight_through(weight, scores):
            def gradients(*args, upstream=None):
                if upstream is None:  # TensorFlow and JAX pass it positionally, torch by name
                    (upstream,) = args
                return upstream * hard_mask, ops.cast(upstream * weight, scores.dtype)

            return weight * hard_mask, gradients

        return straight_through(weight, scores)


@keras.saving.register_keras_serializable(package="keras_prune")
class SigmoidGateMask(_Reselecting):
    """Soft gates `sigmoid(score / temperature)` on the weights kept by the top-k of the scores.

    Gates start near 1 (about 0.95-0.98, larger for larger |w|), so the wrapped layer starts close
    to the original. A lower temperature makes the gates sharper.

    The top-k is chosen again as `LearnableMask`'s is (see `reselect` there); the gates follow
    the scores at every step either way.

    Args:
        temperature: > 0; divides the scores inside the sigmoid.
        reselect: "schedule" (default) or "step", as for `LearnableMask`.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.8),
    mask=kp.mask_types.SigmoidGateMask(temperature=0.5))
    ```
    """

    learnable = True

    def __init__(self, temperature=1.0, reselect="schedule"):
        temperature = validation.check_real("temperature", temperature, low=0, low_open=True)
        self.temperature = float(temperature)
        self.reselect = _check_reselect(reselect)

    def initial_scores(self, weight_value):
        magnitude = ops.abs(weight_value)
        relative = magnitude / (ops.max(magnitude) + 1e-12)
        return self.temperature * (3.0 + relative)

    def forward_mask(self, hard_mask, scores):
        scores, hard_mask = _same_dtype(scores, hard_mask)
        gate = ops.sigmoid(scores / self.temperature)
        # Forward: hard * gate. Backward also reaches pruned entries (through the
        # straight-through term), so a gate outside the top-k can grow back in.
        return (hard_mask + (gate - ops.stop_gradient(gate))) * gate

    def masked_weight(self, weight, hard_mask, scores):
        # The value and gradients of `weight * forward_mask(hard_mask, scores)`, written out as
        # `LearnableMask` does: forward `W * hard * gate`; backward `g * hard * gate` into the
        # weight and `g * W * (hard + gate) * gate'` into the scores (the bracket's derivative
        # in the gate is `hard + gate`, the sigmoid's is `gate * (1 - gate) / temperature`).
        weight = ops.reshape(weight, ops.shape(weight))
        scores = ops.reshape(scores, ops.shape(scores))

        @ops.custom_gradient
        def gated(weight, scores):
            gate = ops.sigmoid(scores / self.temperature)
            hard = ops.cast(hard_mask, gate.dtype)
            kept = ops.cast(hard * gate, weight.dtype)

            def gradients(*args, upstream=None):
                if upstream is None:  # TensorFlow and JAX pass it positionally, torch by name
                    (upstream,) = args
                slope = (hard + gate) * gate * (1.0 - gate) / self.temperature
                into_scores = ops.cast(upstream * weight, gate.dtype) * slope
                return upstream * kept, ops.cast(into_scores, scores.dtype)

            return weight * kept, gradients

        return gated(weight, scores)

    def get_config(self):
        return {"temperature": self.temperature, "reselect": self.reselect}


ALIASES = {
    "binary": BinaryMask,
    "learnable": LearnableMask,
    "sigmoid": SigmoidGateMask,
}

REGISTRY = registry.Registry(
    "mask",
    MaskType,
    ALIASES,
    examples="kp.mask_types.SigmoidGateMask(temperature=0.5)",
)


def get(identifier):
    """A mask type from an instance, a name ("binary", "learnable", "sigmoid"),
    `(name, {arguments})` or a serialized dict.

    Example:

    ```python
    kp.mask_types.get("learnable")  # LearnableMask()
    ```
    """
    return REGISTRY.get(identifier)


def serialize(mask_type):
    """A JSON-able config of `mask_type`."""
    return REGISTRY.serialize(mask_type)


def deserialize(config, custom_objects=None):
    """The mask type `serialize` described."""
    return REGISTRY.deserialize(config, custom_objects)
