"""Where the wrappers of a subclassed model pruned in place are kept.

A subclassed model's `call` is Python code, so its layers cannot be swapped for wrappers.
`kp.prune` then gives each prunable layer a wrapper that is never called: it owns the masks and
holds the layer's own variables at zero through their constraints. The wrappers are kept on the
model in an `InPlacePruning` container, which Keras does not track as state (it is neither a
layer nor a variable), so the model's saved weights and structure are unchanged: the zeros are
saved with the weights, the masks are not.
"""

IN_PLACE_ATTRIBUTE = "keras_prune_in_place"


class InPlacePruning:
    """The wrappers holding the masks of a subclassed model pruned in place.

    Attributes:
        wrappers: the `PruneWrapper`s, one per pruned layer, each built around the model's own
            layer.
    """

    def __init__(self, wrappers):
        self.wrappers = list(wrappers)

    def __repr__(self):
        return f"InPlacePruning({[wrapper.name for wrapper in self.wrappers]})"
