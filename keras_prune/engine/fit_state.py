"""Letting callbacks read and change a model's variables in the middle of `fit`, on any backend.

On TensorFlow and torch the variables are the training state. JAX's `fit` keeps the state in
arrays of its own and leaves the variables empty between epochs; Keras' JAX trainer offers
`model.jax_state_sync()`, which writes that state back and makes the next step read the
variables again, so that what a callback assigns takes effect.
"""

import keras


def make_variables_current(model, wrappers=()):
    """Make `model`'s variables hold the live training state before a callback uses them.

    On JAX this also zeroes the weights each binary mask removes (`wrappers`' masks are applied in
    the forward pass there, so the stored weights may have drifted since the last update).
    Elsewhere it does nothing: the variables are always current and masked weights always zero.
    """
    if keras.backend.backend() != "jax":
        return
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
    for wrapper in wrappers:
        wrapper.hold_masked_weights()
