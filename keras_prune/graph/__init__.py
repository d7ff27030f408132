"""A model's graph through public Keras: tracing, copying and rewiring, channel groups and how
important their channels are."""

from keras_prune.graph.channel_importance import channel_scores
from keras_prune.graph.groups import Group, Member, channel_groups
from keras_prune.graph.rewire import CannotCopy, copy_model, replace_layers
from keras_prune.graph.tracing import Call, Graph, NotTraceable, trace

__all__ = [
    "Call",
    "CannotCopy",
    "Graph",
    "Group",
    "Member",
    "NotTraceable",
    "channel_groups",
    "channel_scores",
    "copy_model",
    "replace_layers",
    "trace",
]
