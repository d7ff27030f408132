"""`EarlyExitModel`: exit heads on chosen blocks of a backbone, trained with it or after it.

An exit head (global average pooling and a Dense classifier) reads the output of a chosen
layer; at inference the model runs block by block and stops at the first exit whose
prediction is confident enough (`kp.dynamic.StagedRunner` on exported stages), so easy inputs
cost less than hard ones (BranchyNet, Teerapittayanon et al. 2016). Heads are trained jointly
with the backbone (`freeze_backbone=False`) or on a trained, frozen backbone; with
`distillation`, each exit also learns from the final head's predictions (self-distillation).
"""

import copy

import keras
from keras import ops

from keras_prune.core import validation
from keras_prune.distill import losses as distill_losses
from keras_prune.distill.distiller import ends_in_softmax
from keras_prune.dynamic.compiled_loss import loss_function
from keras_prune.graph import tracing


def _check_exits(model, exits):
    if isinstance(exits, str) or not exits:
        raise ValueError(
            "Expected `exits` to be a non-empty list of layer names, e.g. ['block1_out', "
            f"'block2_out']. Received: exits={exits!r}"
        )
    names = [layer.name for layer in model.layers]
    for name in exits:
        if name not in names:
            raise ValueError(
                f"Expected every name in `exits` to be a layer of model {model.name!r}. "
                f"Received: {name!r}; its layers are {names}."
            )
    order = [names.index(name) for name in exits]
    if order != sorted(set(order)):
        raise ValueError(
            f"Expected `exits` in the order the model runs them, without repeats. Received: "
            f"exits={list(exits)!r}"
        )
    return list(exits)


@keras.saving.register_keras_serializable(package="keras_prune")
class EarlyExitModel(keras.Model):
    """A classifier with extra exits after chosen layers, for input-dependent early exit.

    Calling the model returns the list `[exit_1, ..., exit_n, final]` of class scores. `fit`
    trains the sum of the losses of every exit (weighted by `exit_weights`) and of the final
    head with the compiled loss; metrics are reported for the final head. `exit_predictions`
    gives every exit's class probabilities for threshold calibration, and
    `kp.dynamic.export_stages` exports one TFLite file per stage.

    Args:
        model: a built Sequential or Functional classifier (one input, one output of class
            scores).
        exits: names of layers of `model`, in run order, whose outputs get an exit head; put
            them at block outputs (no residual connection may cross an exit).
        exit_weights: loss weight of each exit (default 1.0 each); the final head weighs 1.
        distillation: each exit also learns from the final head's predictions: its loss is
            `(1 - alpha) * label loss + alpha * soft-target loss`.
        alpha: weight of the distillation term, in [0, 1].
        temperature: distillation temperature > 0.
        freeze_backbone: train the heads only (on a trained backbone; sets
            `model.trainable = False`).
        head: how an exit head reduces feature maps before its Dense classifier: "average"
            (global average pooling, cheapest) or "flatten" (keeps the spatial layout: more
            accurate on small feature maps, more weights).

    Example:

    ```python
    import keras, numpy as np
    import keras_prune as kp
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="block1")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    model = kp.dynamic.EarlyExitModel(keras.Model(inputs, outputs), exits=["block1"])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(np.random.rand(32, 8, 8, 1), np.random.randint(0, 10, 32), verbose=0)
    first, final = model.exit_predictions(np.random.rand(4, 8, 8, 1))
    ```
    """

    def __init__(
        self,
        model,
        exits,
        exit_weights=None,
        distillation=False,
        alpha=0.5,
        temperature=2.0,
        freeze_backbone=False,
        head="average",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model) or not tracing.is_graph_model(model):
            raise TypeError(
                "Expected `model` to be a built Sequential or Functional keras.Model. "
                f"Received: model={model!r}"
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                "Expected a classifier with one input and one output. Received: model "
                f"{model.name!r} with {len(model.inputs)} inputs and {len(model.outputs)} outputs."
            )
        self.backbone = model
        self.exit_names = _check_exits(model, exits)
        if exit_weights is None:
            exit_weights = [1.0] * len(self.exit_names)
        if len(exit_weights) != len(self.exit_names):
            raise ValueError(
                f"Expected one weight per exit ({len(self.exit_names)}). Received: "
                f"exit_weights={exit_weights!r}"
            )
        self.exit_weights = [
            validation.check_real(f"exit_weights[{i}]", w, low=0.0)
            for i, w in enumerate(exit_weights)
        ]
        self.distillation = validation.check_bool("distillation", distillation)
        self.alpha = validation.check_real("alpha", alpha, low=0.0, high=1.0)
        self.temperature = validation.check_real("temperature", temperature, low=0.0, low_open=True)
        self.freeze_backbone = validation.check_bool("freeze_backbone", freeze_backbone)
        self.head = validation.check_choice("head", head, ("average", "flatten"))
        self.from_logits = not ends_in_softmax(model)
        if self.freeze_backbone:
            model.trainable = False
        classes = int(model.outputs[0].shape[-1])
        activation = None if self.from_logits else "softmax"
        self.heads = []
        outputs = []
        for name in self.exit_names:
            features = model.get_layer(name).output
            head = keras.Sequential(name=f"exit_{name}")
            if len(features.shape) > 2:
                head.add(_reduction(self.head, len(features.shape)))
            head.add(keras.layers.Dense(classes, activation=activation))
            self.heads.append(head)
            outputs.append(head(features))
        self.network = keras.Model(model.inputs, outputs + [model.outputs[0]], name="network")
        self.built = True  # heads are built by the call above

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss_fn = loss_function(self.loss, "EarlyExitModel")
        final = y_pred[-1]
        total = ops.cast(loss_fn(y, final, sample_weight), "float32")
        teacher = ops.stop_gradient(final)
        for weight, output in zip(self.exit_weights, y_pred[:-1], strict=True):
            term = loss_fn(y, output, sample_weight)
            if self.distillation:
                soft = ops.mean(
                    distill_losses.soft_target_loss(
                        teacher, output, self.temperature, self.from_logits
                    )
                )
                term = (1.0 - self.alpha) * term + self.alpha * soft
            total = total + weight * ops.cast(term, "float32")
        for extra in self.losses:
            total = total + ops.cast(extra, "float32")
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[-1], sample_weight)

    def exit_predictions(self, x, batch_size=256):
        """Class probabilities of every exit and of the final head: a list of
        `(num_samples, classes)` arrays, final head last."""
        outputs = self.network.predict(x, batch_size=batch_size, verbose=0)
        return [_probabilities(out, self.from_logits) for out in outputs]

    def get_config(self):
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.backbone),
            exits=list(self.exit_names),
            exit_weights=list(self.exit_weights),
            distillation=self.distillation,
            alpha=self.alpha,
            temperature=self.temperature,
            freeze_backbone=self.freeze_backbone,
            head=self.head,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Deep copy: deserializing consumes the nested model config, and the caller's must stay.
        config = copy.deepcopy(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def _reduction(head, rank):
    if head == "flatten":
        return keras.layers.Flatten()
    if rank == 3:
        return keras.layers.GlobalAveragePooling1D()
    if rank == 4:
        return keras.layers.GlobalAveragePooling2D()
    return keras.layers.GlobalAveragePooling3D()


def _probabilities(outputs, from_logits):
    import numpy as np

    outputs = np.asarray(outputs, dtype=np.float64)
    if not from_logits:
        return outputs.astype("float32")
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype("float32")
