"""Importance criteria: how much each weight matters, from its value and gradient statistics.

A criterion maps `(weight, statistics) -> scores` of the weight's shape; the granularity then
keeps the highest scores (pooling them over blocks or channels). Criteria that rank by gradients
read a `GradientStatistics` the wrapper holds per pruned weight, filled by `collect_gradients`
(which `kp.PruningCallback(calibration_data=...)` calls before each mask update), so no custom
training loop is needed.

| name | score | needs gradients |
| --- | --- | --- |
| "magnitude" | `|w|` | no |
| "l2" | `w**2` (groups pooled by sum/avg rank by L2 norm) | no |
| "random" | uniform, seeded; pruned weights stay pruned | no |
| "gradient" | `|mean g|` | yes |
| "taylor" | `|w * mean g|` (first-order Taylor) | yes |
| "fisher" | `mean g**2` (empirical Fisher diagonal) | yes |
| "obd" | `0.5 * mean g**2 * w**2` (OBD, Fisher as Hessian diagonal) | yes |
| "movement" | `sum over collections of -w * mean g` | yes |

Gradients are computed by `keras_prune.engine.gradients.collect_gradients` on the TensorFlow,
torch and JAX backends; this module is backend-neutral math.
"""

import zlib

import keras
from keras import ops

from keras_prune.core import registry, validation
from keras_prune.core.config_object import ConfigObject

__all__ = [
    "BatchNormScale",
    "Criterion",
    "Fisher",
    "FunctionCriterion",
    "GradientMagnitude",
    "GradientStatistics",
    "L2",
    "Magnitude",
    "Movement",
    "OBD",
    "Random",
    "Taylor",
    "deserialize",
    "get",
    "serialize",
]


class GradientStatistics:
    """Running gradient statistics of one weight, gathered by `collect_gradients`.

    Attributes:
        batches: number of batches in the current means (0 until data was seen).
        mean_gradient: mean of dL/dw over those batches (None until data was seen).
        mean_squared_gradient: mean of (dL/dw)**2 over those batches.
        movement: sum over all collections of `-w * mean_gradient` (movement pruning's score
            for weights that are being fine-tuned); never reset by a new collection.
        collections: number of times statistics were collected.
    """

    def __init__(self):
        self.batches = 0
        self.mean_gradient = None
        self.mean_squared_gradient = None
        self.movement = None
        self.collections = 0

    def record(self, weight, gradients):
        """Replace the means with those of `gradients` (a list, one per batch) at `weight`."""
        if not gradients:
            raise ValueError("Expected at least one gradient batch to record. Received none.")
        total = ops.zeros_like(gradients[0])
        squared = ops.zeros_like(gradients[0])
        for gradient in gradients:
            total = total + gradient
            squared = squared + ops.square(gradient)
        self.batches = len(gradients)
        self.mean_gradient = total / self.batches
        self.mean_squared_gradient = squared / self.batches
        step_movement = -ops.convert_to_tensor(weight) * self.mean_gradient
        self.movement = step_movement if self.movement is None else self.movement + step_movement
        self.collections += 1

    def reset(self):
        self.__init__()


class Criterion(ConfigObject):
    """Base class: subclasses implement `score(weight, statistics)`.

    `needs_gradients = True` makes `__call__` refuse to score before any gradient was seen,
    instead of pruning on zeros.

    The same criterion ranks whole channels (channel granularity, `kp.prune_channels`): a
    channel's importance gathers, over the weights of its dependency group named by
    `channel_weights` ("kernels": kernel entries the channel owns; "trainable": every trainable
    weight it owns; "scales": per-channel normalization scales), the per-entry
    `channel_values` reduced by `channel_reduction` ("norm": the L1 / L2 norm the granularity
    asks for; "l1": always L1; "abs_sum": |sum of signed values|).

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_project")
    class Cubed(kp.criteria.Criterion):
        def score(self, weight, statistics):
            return ops.abs(weight) ** 3

    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion=Cubed())
    ```
    """

    needs_gradients = False
    #: Whether every score is >= 0 and never -0.0 (an absolute value): a global ranking then
    #: sorts the scores' float bits as they are (less memory). Leave False unless certain.
    nonnegative = False
    #: Whether scoring a weight again gives the same scores while the weight and its statistics
    #: are unchanged (no state, no unseeded randomness): a global ranking then computes them
    #: again in each pass instead of holding every layer's (less memory). Leave False unless
    #: certain.
    deterministic = False
    channel_weights = "kernels"
    channel_reduction = "norm"

    def channel_values(self, weight, statistics=None):
        """Per-entry values a channel's importance is reduced from (default: the scores)."""
        return self(weight, statistics)

    def __call__(self, weight, statistics=None):
        if self.needs_gradients and (statistics is None or statistics.batches == 0):
            name = getattr(weight, "path", None) or "this weight"
            raise ValueError(
                f"Criterion {self!r} ranks weights by their gradients, but no gradient has been "
                f"collected for {name!r} yet, so it would prune on zeros. Pass calibration data: "
                "`kp.PruningCallback(calibration_data=(x, y))` in `fit`, or call "
                "`kp.engine.collect_gradients(model, (x, y))` before "
                "`kp.pruning.update_masks` / `kp.prune_once`."
            )
        return self.score(weight, statistics)

    def score(self, weight, statistics):
        raise NotImplementedError(f"{type(self).__name__} must implement `score`.")


@keras.saving.register_keras_serializable(package="keras_prune")
class Magnitude(Criterion):
    """`|w|`: tfmot's criterion and the default.

    Example:

    ```python
    kp.criteria.Magnitude()(np.array([-2.0, 0.5]))  # [2.0, 0.5]
    ```
    """

    nonnegative = True

    deterministic = True

    def score(self, weight, statistics):
        return ops.abs(weight)


@keras.saving.register_keras_serializable(package="keras_prune")
class L2(Criterion):
    """`w**2`: summed (or averaged) over a group it ranks groups by their L2 norm.

    Use with `kp.granularity.Block(..., pooling="avg")` or `kp.granularity.Channel(norm="l1")` to
    prune the blocks or
    channels of least L2 norm.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), granularity=kp.granularity.Block((1, 4)),
             criterion="l2")
    ```
    """

    deterministic = True

    def score(self, weight, statistics):
        return ops.square(weight)


@keras.saving.register_keras_serializable(package="keras_prune")
class Random(Criterion):
    """Uniform random scores: the baseline every criterion should beat.

    The scores depend only on `seed` and the weight's path, so a weight's ranking is the same at
    every mask update and across runs. Weights that are already zero score below every non-zero
    weight, so masks of a rising schedule are nested.

    Args:
        seed: integer seed.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion=kp.criteria.Random(seed=3))
    ```
    """

    # Seeded by an integer: keras.random draws the same values at every call.
    deterministic = True

    def __init__(self, seed=0):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Expected `seed` to be an integer. Received: seed={seed!r}")
        self.seed = seed

    def score(self, weight, statistics):
        name = getattr(weight, "path", None) or ""
        weight_seed = (self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)
        uniform = keras.random.uniform(ops.shape(weight), seed=weight_seed)
        alive = ops.cast(ops.not_equal(weight, 0), "float32")
        return alive * (1.0 + uniform)

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_prune")
class BatchNormScale(Criterion):
    """`|gamma|` of the BatchNormalization scales: network slimming (Liu et al. 2017).

    It ranks channels only (channel granularity, `kp.prune_channels`): a channel scores the sum
    of |gamma| of its group's BatchNormalizations; a group without one falls back to the
    magnitude of its kernels. Pair it with an L1 penalty on gamma during training.

    Example:

    ```python
    small = kp.prune_channels(model, 0.5, criterion="bn_scale")
    ```
    """

    channel_weights = "scales"
    channel_reduction = "l1"

    nonnegative = True

    deterministic = True

    def score(self, weight, statistics):
        return ops.abs(weight)


@keras.saving.register_keras_serializable(package="keras_prune")
class GradientMagnitude(Criterion):
    """`|mean g|`: weights the loss is most sensitive to.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion="gradient")
    ```
    """

    needs_gradients = True

    nonnegative = True

    deterministic = True

    def score(self, weight, statistics):
        return ops.abs(statistics.mean_gradient)


@keras.saving.register_keras_serializable(package="keras_prune")
class Taylor(Criterion):
    """`|w * mean g|`: first-order Taylor estimate of the loss change when `w` is zeroed
    (Molchanov et al. 2019).

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion="taylor")
    ```
    """

    needs_gradients = True
    # A channel's importance is |sum of w * g| over every weight it owns: the first-order
    # change of the loss when the whole channel goes (Molchanov et al. 2019).
    channel_weights = "trainable"
    channel_reduction = "abs_sum"

    nonnegative = True

    deterministic = True

    def score(self, weight, statistics):
        # ops.multiply: `weight` may be a NumPy array, which `*` cannot take with a torch tensor.
        return ops.abs(ops.multiply(weight, statistics.mean_gradient))

    def channel_values(self, weight, statistics=None):
        self(weight, statistics)  # refuses without gradients
        return ops.multiply(weight, statistics.mean_gradient)


@keras.saving.register_keras_serializable(package="keras_prune")
class Fisher(Criterion):
    """`mean g**2`: the diagonal of the empirical Fisher information.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion="fisher")
    ```
    """

    needs_gradients = True

    deterministic = True

    def score(self, weight, statistics):
        return statistics.mean_squared_gradient


@keras.saving.register_keras_serializable(package="keras_prune")
class OBD(Criterion):
    """`0.5 * mean g**2 * w**2`: Optimal Brain Damage's saliency `0.5 * H_ii * w_i**2` with the
    Hessian diagonal approximated by the empirical Fisher.

    Example:

    ```python
    kp.prune(model, schedule=kp.ConstantSparsity(0.5), criterion="obd")
    ```
    """

    needs_gradients = True

    deterministic = True

    def score(self, weight, statistics):
        return 0.5 * statistics.mean_squared_gradient * ops.square(weight)


@keras.saving.register_keras_serializable(package="keras_prune")
class Movement(Criterion):
    """`sum -w * g` accumulated over collections: keeps weights moving away from zero while
    fine-tuning (Sanh et al. 2020, hard movement pruning with fixed masks between updates).

    Example:

    ```python
    kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.9, 0, 1000), criterion="movement")
    ```
    """

    needs_gradients = True

    deterministic = True

    def score(self, weight, statistics):
        return statistics.movement


@keras.saving.register_keras_serializable(package="keras_prune")
class FunctionCriterion(Criterion):
    """A criterion from a function `(weight, statistics) -> scores`.

    `statistics` is the weight's `GradientStatistics` (its attributes are None before data was
    seen unless `needs_gradients=True`, which refuses to score then). To save models that use
    it, register the function with `keras.saving.register_keras_serializable`.

    Args:
        function: callable returning scores of the weight's shape (higher = keep).
        needs_gradients: whether the function reads gradient statistics.

    Example:

    ```python
    def saliency(weight, statistics):
        return ops.abs(weight) * ops.sqrt(statistics.mean_squared_gradient)

    kp.prune(model, schedule=kp.ConstantSparsity(0.5),
             criterion=kp.criteria.FunctionCriterion(saliency, needs_gradients=True))
    ```
    """

    def __init__(self, function, needs_gradients=False):
        if isinstance(function, dict):
            function = keras.saving.deserialize_keras_object(function)
        if not callable(function):
            raise TypeError(
                "Expected `function` to be a callable `(weight, statistics) -> scores`. "
                f"Received: function={function!r}"
            )
        self.function = function
        self.needs_gradients = validation.check_bool("needs_gradients", needs_gradients)

    def score(self, weight, statistics):
        scores = self.function(weight, statistics)
        if tuple(ops.shape(scores)) != tuple(ops.shape(weight)):
            raise ValueError(
                f"Criterion function {self.function!r} returned scores of shape "
                f"{tuple(ops.shape(scores))} for a weight of shape {tuple(ops.shape(weight))}. "
                "Expected one score per weight (same shape)."
            )
        return scores

    def get_config(self):
        return {
            "function": keras.saving.serialize_keras_object(self.function),
            "needs_gradients": self.needs_gradients,
        }

    def __eq__(self, other):
        return (
            type(self) is type(other)
            and self.function is other.function
            and self.needs_gradients == other.needs_gradients
        )


ALIASES = {
    "magnitude": Magnitude,
    "l1": Magnitude,
    "l2": L2,
    "random": Random,
    "bn_scale": BatchNormScale,
    "gradient": GradientMagnitude,
    "taylor": Taylor,
    "fisher": Fisher,
    "obd": OBD,
    "movement": Movement,
}

REGISTRY = registry.Registry(
    "criterion",
    Criterion,
    ALIASES,
    from_function=FunctionCriterion,
    examples="kp.criteria.Random(seed=3)",
)


def get(identifier):
    """A criterion from an instance, a name (see `ALIASES`), `(name, {arguments})`, a
    serialized dict, or a function `(weight, statistics) -> scores`.

    Example:

    ```python
    kp.criteria.get("taylor")  # Taylor()
    ```
    """
    return REGISTRY.get(identifier)


def serialize(criterion):
    """A JSON-able config of `criterion`."""
    return REGISTRY.serialize(criterion)


def deserialize(config, custom_objects=None):
    """The criterion `serialize` described."""
    return REGISTRY.deserialize(config, custom_objects)
