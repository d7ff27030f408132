"""Which layers the automated tools touch, and the copy of the model they work on."""

import re

from keras_prune.core import validation
from keras_prune.graph import rewire
from keras_prune.layers.wrapper import find_wrappers


def working_copy(model):
    """A plain copy of `model` (wrappers stripped) whose weights can be changed freely."""
    if find_wrappers(model):
        from keras_prune.pruning import strip

        return strip(model)
    return rewire.copy_model(model)


def layer_filter(filters):
    """A predicate on layers from `filters` (None, a regex, a list of regexes, a callable)."""
    return validation.layer_filter(filters)


def layer_pattern(names):
    """A `filters` regex matching exactly the layers `names`."""
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"
