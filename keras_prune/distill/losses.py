"""Knowledge-distillation losses for distillation-aware pruning.

Three losses transfer knowledge from a frozen teacher into a (pruned) student:

- `SoftTargets`: Hinton et al. (2015). KL divergence between the teacher's and the student's
  class distributions softened by a temperature `T`, scaled by `T**2` so its gradients keep
  the magnitude of the hard-label loss whatever the temperature.
- `FeatureMatching`: FitNets' hint loss (Romero et al., 2015), the mean squared error between
  an intermediate teacher feature map and the student's. When the widths differ (a narrower
  or channel-pruned student) `keras_prune.Distiller` inserts a learned projection.
- `AttentionTransfer`: Zagoruyko & Komodakis (2017). Compares spatial attention maps
  (channel-wise mean of `|A|**p`, L2-normalised per sample), so teacher and student may have
  different numbers of channels.

Each is a `keras.losses.Loss` taking `(y_true=teacher, y_pred=student)`, usable on its own in
`model.compile(loss=...)`, and each is backed by a pure function of arrays.

"""

import numbers

import keras
from keras import ops

from keras_prune.core import validation

_EPSILON = 1e-7


def _check_positive(name, value):
    return validation.check_real(name, value, low=0, low_open=True)


def _per_sample_mean(values):
    """Mean over every axis except the first (batch) axis."""
    rank = len(values.shape)
    if rank < 2:
        return values
    return ops.mean(values, axis=tuple(range(1, rank)))


def _as_log_probabilities(outputs, temperature, from_logits):
    if not from_logits:
        # log(softmax(z)) = z - logsumexp(z): the log-probabilities are logits of the same
        # distribution, so tempering them is exact.
        outputs = ops.log(ops.clip(outputs, _EPSILON, 1.0))
    return ops.log_softmax(outputs / temperature, axis=-1)


def soft_target_loss(teacher_outputs, student_outputs, temperature, from_logits=True):
    """Per-sample `T**2 * KL(softmax(teacher / T) || softmax(student / T))`.

    Args:
        teacher_outputs: teacher logits (or probabilities if `from_logits=False`), classes on
            the last axis.
        student_outputs: student outputs of the same shape and kind.
        temperature: softening temperature `T` > 0 (a float or a scalar tensor).
        from_logits: whether the outputs are logits (`True`) or probabilities.

    Returns:
        A tensor with one loss value per sample (the shape of the outputs without the last
        axis).

    Example:

    ```pycon
    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> float(soft_target_loss(t, t, temperature=4.0)[0])
    0.0

    ```
    """
    if isinstance(temperature, numbers.Real):
        temperature = validation.check_real("temperature", temperature, low=0, low_open=True)
    teacher_log_p = _as_log_probabilities(teacher_outputs, temperature, from_logits)
    student_log_p = _as_log_probabilities(student_outputs, temperature, from_logits)
    kl = ops.sum(ops.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1)
    return kl * ops.square(ops.cast(temperature, kl.dtype))


def feature_matching_loss(teacher_features, student_features, normalize=False):
    """Per-sample mean squared error between two feature tensors of the same shape.

    Args:
        teacher_features: teacher features, `(batch, ...)`.
        student_features: student features, same shape.
        normalize: L2-normalise each sample's features before comparing, which makes the
            loss insensitive to the overall scale of either network's activations.

    Returns:
        A `(batch,)` tensor.

    Example:

    ```pycon
    >>> import numpy as np
    >>> a = np.ones((2, 4), "float32")
    >>> [float(v) for v in feature_matching_loss(a, 0 * a)]
    [1.0, 1.0]

    ```
    """
    if normalize:
        teacher_features = _l2_normalize_per_sample(teacher_features)
        student_features = _l2_normalize_per_sample(student_features)
    return _per_sample_mean(ops.square(teacher_features - student_features))


def _l2_normalize_per_sample(values):
    flat = ops.reshape(values, (ops.shape(values)[0], -1))
    return flat / ops.maximum(ops.norm(flat, axis=-1, keepdims=True), _EPSILON)


def attention_map(features, p=2):
    """Spatial attention of a channels-last feature map: L2-normalised mean of `|A|**p`.

    Args:
        features: `(batch, *spatial, channels)` activations.
        p: exponent; 2 as in the paper.

    Returns:
        A `(batch, prod(spatial))` tensor, each row of unit L2 norm.

    Example:

    ```pycon
    >>> import numpy as np
    >>> m = attention_map(np.ones((1, 2, 2, 3), "float32"))
    >>> [round(float(v), 3) for v in m[0]]
    [0.5, 0.5, 0.5, 0.5]

    ```
    """
    if len(features.shape) < 3:
        raise ValueError(
            "Expected a feature map of rank >= 3, `(batch, *spatial, channels)`, for "
            f"attention transfer. Received shape {tuple(features.shape)}. Pick a "
            "convolutional layer's output as the hint, or use `FeatureMatching` for "
            "dense features."
        )
    energy = ops.mean(ops.power(ops.abs(features), p), axis=-1)
    return _l2_normalize_per_sample(energy)


def attention_transfer_loss(teacher_features, student_features, p=2):
    """Per-sample mean squared difference of the teacher's and student's attention maps.

    The channel counts may differ; the spatial shapes must match.

    Args:
        teacher_features: `(batch, *spatial, teacher_channels)`.
        student_features: `(batch, *spatial, student_channels)`.
        p: exponent of the attention map.

    Returns:
        A `(batch,)` tensor.

    Example:

    ```pycon
    >>> import numpy as np
    >>> a = np.random.rand(2, 4, 4, 8).astype("float32")
    >>> [round(float(v), 6) for v in attention_transfer_loss(a, 3 * a)]
    [0.0, 0.0]

    ```
    """
    teacher_map = attention_map(teacher_features, p)
    student_map = attention_map(student_features, p)
    return ops.mean(ops.square(teacher_map - student_map), axis=-1)


@keras.saving.register_keras_serializable(package="keras_prune")
class SoftTargets(keras.losses.Loss):
    """Soft-target distillation loss: KL on temperature-softened outputs, scaled by `T**2`.

    `y_true` are the teacher's outputs, `y_pred` the student's (both logits by default).

    Args:
        temperature: softening temperature `T` > 0. Higher values expose more of the
            teacher's "dark knowledge" about non-target classes.
        from_logits: `True` if the outputs are logits, `False` for probabilities (e.g. a
            final softmax).
        reduction: Keras loss reduction.
        name: loss name.
        dtype: loss computation dtype.

    Example:

    ```python
    import keras, numpy as np
    import keras_prune as kp

    teacher_logits = np.random.randn(32, 10).astype("float32")
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    student.compile("adam", loss=kp.distill.SoftTargets(temperature=4.0))
    student.fit(np.random.randn(32, 8), teacher_logits, verbose=0)
    ```
    """

    def __init__(
        self,
        temperature=4.0,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="soft_targets",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = _check_positive("temperature", temperature)
        self.from_logits = validation.check_bool("from_logits", from_logits)

    def call(self, y_true, y_pred):
        return soft_target_loss(y_true, y_pred, self.temperature, self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_prune")
class FeatureMatching(keras.losses.Loss):
    """Hint loss: mean squared error between teacher and student features (FitNets).

    `y_true` are the teacher's features, `y_pred` the student's, of equal shape. Inside
    `keras_prune.Distiller`, a student layer narrower than its teacher layer (for example
    after channel pruning) is first mapped to the teacher's width by a learned projection.

    Args:
        normalize: L2-normalise each sample's features before comparing them.
        reduction: Keras loss reduction.
        name: loss name.
        dtype: loss computation dtype.

    Example:

    ```python
    import numpy as np
    import keras_prune as kp

    loss = kp.distill.FeatureMatching()
    print(float(loss(np.ones((2, 4, 4, 8)), np.zeros((2, 4, 4, 8)))))  # 1.0
    ```
    """

    # Compares features element by element: widths must match (the Distiller projects).
    compares_channels = True

    def __init__(
        self,
        normalize=False,
        reduction="sum_over_batch_size",
        name="feature_matching",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.normalize = validation.check_bool("normalize", normalize)

    def call(self, y_true, y_pred):
        return feature_matching_loss(y_true, y_pred, self.normalize)

    def get_config(self):
        config = super().get_config()
        config.update(normalize=self.normalize)
        return config


@keras.saving.register_keras_serializable(package="keras_prune")
class AttentionTransfer(keras.losses.Loss):
    """Attention-transfer loss between convolutional feature maps (channels last).

    Compares where the networks look (the L2-normalised channel mean of `|A|**p` at each
    spatial position), not what their channels hold, so the channel counts of teacher and
    student may differ; the spatial shapes must match. The values are small (unit-norm maps):
    the paper weights this loss by 1000 (`hint_weight` in the Distiller).

    Args:
        p: exponent of the attention map, > 0 (2 in the paper).
        reduction: Keras loss reduction.
        name: loss name.
        dtype: loss computation dtype.

    Example:

    ```python
    import numpy as np
    import keras_prune as kp

    teacher_maps = np.random.rand(2, 8, 8, 32).astype("float32")
    student_maps = np.random.rand(2, 8, 8, 8).astype("float32")
    print(float(kp.distill.AttentionTransfer()(teacher_maps, student_maps)))
    ```
    """

    compares_channels = False

    def __init__(self, p=2, reduction="sum_over_batch_size", name="attention_transfer", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.p = _check_positive("p", p)

    def call(self, y_true, y_pred):
        return attention_transfer_loss(y_true, y_pred, self.p)

    def get_config(self):
        config = super().get_config()
        config.update(p=self.p)
        return config
