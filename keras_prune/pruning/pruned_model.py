"""`PrunedModel`: a pruned copy of a model whose class rebuilds itself from its own config.

keras-hub backbones and task models are Functional subclasses that save their constructor
arguments, not their layers' configs; some of their layers cannot be rebuilt alone. A pruned
copy of such a model therefore keeps the original's config plus the pruning plan (which layers
are wrapped, with which settings) and rebuilds as "original, then wrapped", so it saves and
reloads like the original. `kp.strip` turns it back into an instance of the original class.
"""

import keras

from keras_prune.graph import rewire
from keras_prune.layers.wrapper import PruneWrapper


def wrap_as_planned(model, plan):
    """`model` with the layers named in `plan` wrapped (`plan`: layer name -> wrapper config)."""

    def replace(layer):
        settings = plan.get(layer.name)
        if settings is None:
            return layer
        return PruneWrapper(layer, **settings)

    return rewire.replace_layers(model, replace)


def wrapper_settings(wrapper):
    """The constructor arguments of `wrapper` other than its layer (JSON-able)."""
    config = wrapper.get_config()
    keys = ("schedule", "granularity", "mask", "criterion", "allocation")
    return {key: config[key] for key in keys}


@keras.saving.register_keras_serializable(package="keras_prune")
class PrunedModel(keras.Model):
    """A pruned Functional model that rebuilds from the original model's config and a plan.

    `kp.prune` returns one for models whose class has a config of its own (keras-hub backbones
    and tasks); Sequential and plain Functional models stay what they were.

    Args:
        inputs: the symbolic inputs of the pruned graph.
        outputs: its symbolic outputs.
        source: the original model, serialized (`keras.saving.serialize_keras_object`).
        plan: `{layer name: wrapper settings}` for every wrapped layer.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Example:

    ```python
    # docs: slow
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64)
    pruned = kp.prune(backbone)          # a kp.pruning.PrunedModel
    pruned.save("bert_pruned.keras")     # reloads with keras.saving.load_model
    plain = kp.strip(pruned)             # a BertBackbone again
    ```
    """

    def __init__(self, inputs, outputs, source=None, plan=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.source = source
        self.plan = dict(plan or {})

    def rebuild_source(self):
        """A fresh instance of the original model's class, from its config (new weights)."""
        return keras.saving.deserialize_keras_object(self.source)

    def get_config(self):
        return {"name": self.name, "source": self.source, "plan": self.plan}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        source = config["source"]
        original = keras.saving.deserialize_keras_object(source, custom_objects=custom_objects)
        rewired = wrap_as_planned(original, config["plan"])
        return cls(
            rewired.input,
            rewired.output,
            source=source,
            plan=config["plan"],
            name=config.get("name"),
        )
