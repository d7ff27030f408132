"""A model's graph through public Keras: tracing, copying and rewiring, channel groups."""

from keras_prune.graph.groups import Group, Member, channel_groups
from keras_prune.graph.rewire import copy_model, replace_layers
from keras_prune.graph.tracing import Call, Graph, NotTraceable, trace

__all__ = [
    "Call",
    "Graph",
    "Group",
    "Member",
    "NotTraceable",
    "channel_groups",
    "copy_model",
    "replace_layers",
    "trace",
]
