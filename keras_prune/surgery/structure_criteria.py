"""The structure criteria: how a whole attention head or feed-forward neuron is ranked.

`kp.surgery.heads` and `kp.surgery.ffn` take `criterion` from this closed set, not from the
per-weight criteria of `kp.criteria`: a head or a neuron is ranked as a whole, from its
contribution to the layer output ("activation") or the first-order change of the loss when it
is scaled away ("taylor").
"""

from keras_prune.core import criteria as criteria_lib
from keras_prune.core import validation

__all__ = ["CRITERIA", "check_criterion"]

CRITERIA = ("activation", "taylor")
"""The structure criteria: the names `criterion` takes to rank a whole head (and, in
`kp.surgery.ffn`, a whole feed-forward neuron); a closed set, not names of `kp.criteria`."""


def check_criterion(criterion, caller, unit="head"):
    """`criterion` if it is one of `CRITERIA`, else a ValueError naming the argument, the value
    and the allowed names (and, for a `kp.criteria` name or instance, why it does not apply)."""
    try:
        if criterion in CRITERIA:
            return criterion
    except (TypeError, ValueError):  # unhashable, or an array without one truth value
        pass
    hint = validation.did_you_mean(criterion, CRITERIA)
    is_weight_criterion = isinstance(criterion, criteria_lib.Criterion) or (
        isinstance(criterion, str) and criterion in criteria_lib.REGISTRY.names()
    )
    if is_weight_criterion:
        hint = (
            f" {criterion!r} is a per-weight criterion of `kp.criteria` (for `kp.prune`, "
            f"`kp.prune_channels`); a {unit} is ranked as a whole."
        )
    raise ValueError(
        f"{caller}: expected `criterion` to be one of {list(CRITERIA)} (how a whole {unit} is "
        "ranked: 'activation' from calibration_data=x, 'taylor' from calibration_data=(x, y) "
        f"and a loss). Received: criterion={criterion!r}.{hint}"
    )
