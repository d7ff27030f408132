"""`SlimmableModel`: one set of weights, several widths, trained together.

Every training step runs the full model and narrower sub-networks (the sandwich rule of
universally slimmable networks, Yu & Huang 2019): the largest width on the labels, the
smallest and `num_random` widths drawn from the others learn from the largest width's
predictions (in-place distillation). A sub-network of width `w` is the first
`ceil(w * size)` channels of every prunable channel group (`kp.graph.channel_groups`): it is run by
masking the weights of the same model (a stateless call on masked values, so gradients reach
the shared weights), and materialised as a smaller dense model by `kp.shrink(model,
width=w)`. Batch statistics differ between widths, so `at_width` re-estimates the
BatchNormalization statistics of each materialised width on calibration data (as US-Nets do).
"""

import copy

import keras
import numpy as np
from keras import ops

from keras_prune.core import validation
from keras_prune.distill import losses as distill_losses
from keras_prune.distill.distiller import ends_in_softmax
from keras_prune.dynamic.batchnorm import recalibrate_batchnorm
from keras_prune.dynamic.compiled_loss import loss_function
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.surgery import width as width_lib


@keras.saving.register_keras_serializable(package="keras_prune")
class SlimmableModel(keras.Model):
    """A model trained to run at several widths, each a sub-network of the full one.

    `fit` trains the widths together (sandwich rule with in-place distillation); calling the
    model runs the full width. `at_width(w)` returns the plain Keras model of width `w`
    (fewer filters and neurons, BatchNormalization statistics re-estimated), ready for
    `kp.export.to_tflite`; `kp.dynamic.export_widths` exports every width at once.

    Args:
        model: a built Sequential or Functional model with prunable channel groups (Conv /
            Dense layers, residual Adds, BatchNormalization and depthwise layers are followed
            through; see `kp.graph.channel_groups`). To start from a pretrained model, sort its
            channels first with `kp.dynamic.order_channels(model)`.
        widths: the widths trained and exported, fractions in (0, 1] including 1.0.
        num_random: widths drawn at random from those strictly between the smallest and the
            largest at every step, besides these two (sandwich rule).
        distillation: train the narrower widths on the full width's predictions (True) or on
            the labels with the compiled loss (False).
        temperature: softening temperature of the distillation.
        from_logits: whether the model outputs logits; None: False if its last layer applies
            a softmax, else True.
        round_to: None, or keep a multiple of this many channels per group (4 or 8 suit
            XNNPACK's kernels).

    Example:

    ```python
    import keras, numpy as np
    import keras_prune as kp
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    slim = kp.dynamic.SlimmableModel(model, widths=[0.25, 0.5, 1.0])
    slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.rand(64, 8, 8, 1), np.random.randint(0, 10, 64)
    slim.fit(x, y, epochs=1, verbose=0)
    quarter = slim.at_width(0.25, calibration_data=x)   # Conv2D with 4 filters
    ```
    """

    def __init__(
        self,
        model,
        widths=(0.25, 0.5, 0.75, 1.0),
        num_random=1,
        distillation=True,
        temperature=1.0,
        from_logits=None,
        round_to=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model) or not tracing.is_graph_model(model):
            raise TypeError(
                "Expected `model` to be a built Sequential or Functional keras.Model. "
                f"Received: model={model!r}"
            )
        self.backbone = model
        self.trained_widths = width_lib.check_widths(widths)
        self.num_random = _check_count("num_random", num_random)
        self.distillation = bool(distillation)
        self.temperature = float(
            validation.check_real("temperature", temperature, low=0.0, low_open=True)
        )
        self.from_logits = (
            (not ends_in_softmax(model)) if from_logits is None else bool(from_logits)
        )
        self.round_to = None if round_to is None else _check_count("round_to", round_to, 1)
        groups = groups_lib.channel_groups(model)
        width_lib.prunable_groups(groups, model.name)
        self._axis_masks = self._stacked_masks(groups)
        self._seed = keras.random.SeedGenerator(0)
        self.built = True  # the backbone is built: nothing is created on the first call

    @property
    def widths(self):
        """The trained widths, smallest first."""
        return self.trained_widths

    def _stacked_masks(self, groups):
        """`{id(variable): {axis: (num_widths, channels) float32 array}}`."""
        per_width = [
            width_lib.axis_masks(groups, width, self.round_to) for width in self.trained_widths
        ]
        stacked = {}
        for variable in self.backbone.trainable_variables:
            axes = set()
            for masks in per_width:
                axes.update(masks.get(id(variable), {}))
            for axis in sorted(axes):
                length = int(variable.shape[axis])
                rows = [
                    masks.get(id(variable), {}).get(axis, np.ones(length, "float32"))
                    for masks in per_width
                ]
                stacked.setdefault(id(variable), {})[axis] = np.stack(rows)
        return stacked

    def _masked_value(self, variable, width_index):
        value = ops.convert_to_tensor(variable)
        rank = len(variable.shape)
        for axis, rows in self._axis_masks.get(id(variable), {}).items():
            vector = ops.take(ops.convert_to_tensor(rows), width_index, axis=0)
            shape = [1] * rank
            shape[axis] = rows.shape[1]
            value = value * ops.reshape(vector, shape)
        return value

    def call_at_width(self, inputs, width_index, training=False):
        """Outputs of the sub-network `self.widths[width_index]` (an int or a scalar int
        tensor), computed with the shared weights masked; BatchNormalization statistics are
        not updated."""
        trainable = [
            self._masked_value(variable, width_index)
            for variable in self.backbone.trainable_variables
        ]
        non_trainable = [ops.convert_to_tensor(v) for v in self.backbone.non_trainable_variables]
        outputs, _ = self.backbone.stateless_call(
            trainable, non_trainable, inputs, training=training
        )
        return outputs

    def call(self, inputs, training=None):
        return self.backbone(inputs, training=training)

    def _sampled_indices(self):
        """The smallest width, then `num_random` drawn among the middle ones."""
        count = len(self.trained_widths)
        if count == 1:
            return []
        indices = [0]
        if count > 2:
            for _ in range(self.num_random):
                indices.append(
                    keras.random.randint((), 1, count - 1, seed=self._seed, dtype="int32")
                )
        return indices

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if not training:
            return loss
        teacher = ops.stop_gradient(y_pred)
        for index in self._sampled_indices():
            student = self.call_at_width(x, index, training=True)
            if self.distillation:
                extra = ops.mean(
                    distill_losses.soft_target_loss(
                        teacher, student, self.temperature, self.from_logits
                    )
                )
            else:
                extra = self._label_loss(x, y, student, sample_weight)
            loss = loss + ops.cast(extra, loss.dtype)
        return loss

    def _label_loss(self, x, y, y_pred, sample_weight):
        # The compiled loss alone: the regularization terms are added once, with the full width.
        return loss_function(self.loss, "SlimmableModel")(y, y_pred, sample_weight)

    def at_width(self, width, calibration_data=None, *, batch_size=64):
        """The plain Keras model of a trained width: `kp.shrink(self, width=width)` with its
        BatchNormalization statistics re-estimated on `calibration_data`.

        Args:
            width: one of `self.widths`.
            calibration_data: inputs (`x`, `(x, y)` or an iterable of batches) the statistics
                are estimated on, e.g. 500-2000 training samples; required when the model has
                BatchNormalization layers and `width` < 1 (the full width keeps the
                statistics training gathered).
            batch_size: batch size for arrays.
        """
        from keras_prune.surgery.shrink import shrink

        width = width_lib.check_trained_width(width, self.trained_widths)
        small = shrink(self, width=width, round_to=self.round_to)
        if _has_batchnorm(small) and (width < 1.0 or calibration_data is not None):
            if calibration_data is None:
                raise ValueError(
                    f"Expected `calibration_data` for width={width}: the model has "
                    "BatchNormalization layers whose statistics differ between widths. Pass "
                    "training inputs, e.g. calibration_data=x_train[:1000]."
                )
            recalibrate_batchnorm(small, calibration_data, batch_size=batch_size)
        return small

    def get_config(self):
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.backbone),
            widths=list(self.trained_widths),
            num_random=self.num_random,
            distillation=self.distillation,
            temperature=self.temperature,
            from_logits=self.from_logits,
            round_to=self.round_to,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Deep copy: deserializing consumes the nested model config, and the caller's must stay.
        config = copy.deepcopy(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def _has_batchnorm(model):
    return any(isinstance(layer, keras.layers.BatchNormalization) for layer in _all_layers(model))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _check_count(name, value, minimum=0):
    return validation.check_int(name, value, minimum=minimum)
