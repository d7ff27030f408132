"""Argument checks shared by the public constructors: each error names the value and the fix."""

import numbers


def check_sparsity(name, value):
    """Raise unless `value` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"Expected `{name}` in [0, 1) (a fraction of weights to zero; 1.0 would empty the "
            f"layer). Received: {name}={value!r}"
        )


def check_int(name, value, minimum):
    """Raise unless `value` is an int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}"
        )


def check_choice(name, value, choices):
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Expected `{name}` to be one of {sorted(choices)}. Received: {name}={value!r}"
        )
