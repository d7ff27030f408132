"""Argument checks shared by every public entry point: each error names the argument, the value
received, what was expected and how to fix it.

Bad values raise `ValueError`, numbers of the wrong kind included (as Keras does); `TypeError`
is kept for objects of the wrong kind altogether (a layer where a model was expected).

Numbers: Python and NumPy integers and floats are accepted alike (`np.float32(3)` is 3.0);
booleans, NaN and infinities are refused. The checks return the value converted to a plain
Python `int` / `float`, so callers store clean values that serialize.
"""

import difflib
import math
import numbers
import os
import re

import keras


def _describe(value):
    return f"{value!r} (of type {type(value).__name__})"


def check_real(name, value, low=None, high=None, low_open=False, high_open=False, hint=""):
    """A finite real number within the bounds, as a Python float.

    Example:

    ```python
    check_real("power", np.float32(3), low=0, low_open=True)  # 3.0
    ```
    """
    if high is None and low is None:
        bounds = "to be a finite number"
    elif high is None:
        bounds = f"> {low}" if low_open else f">= {low}"
    elif low is None:
        bounds = f"< {high}" if high_open else f"<= {high}"
    else:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        bounds = f"in {left}{low}, {high}{right}"
    message = f"Expected `{name}` {bounds}. Received: {name}="
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(message + _describe(value) + (f". {hint}" if hint else ""))
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        raise ValueError(message + repr(value) + (f". {hint}" if hint else ""))
    return value


def check_int(name, value, minimum=None, maximum=None):
    """An integer (Python or NumPy; not a bool, not a float) within the bounds, as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            raise ValueError(
                f"Expected `{name}` to be an integer. Received: {name}={value!r}; "
                f"pass int({value!r}) if you meant it."
            )
        raise ValueError(f"Expected `{name}` to be an integer. Received: {name}={_describe(value)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = []
        if minimum is not None:
            bounds.append(f">= {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        raise ValueError(
            f"Expected `{name}` to be an integer {' and '.join(bounds)}. Received: {name}={value!r}"
        )
    return value


def check_sparsity(name, value):
    """A sparsity: a finite number in [0, 1), as a float."""
    return check_real(
        name,
        value,
        low=0.0,
        high=1.0,
        high_open=True,
        hint="A sparsity is the fraction of weights set to zero; 1.0 would empty the layer.",
    )


def check_choice(name, value, choices):
    """One of `choices`."""
    try:
        found = value in choices
    except TypeError:
        found = False
    if not found:
        raise ValueError(
            f"Expected `{name}` to be one of {sorted(choices)}. Received: {name}={value!r}"
        )
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(
            f"Expected `{name}` to be True or False. Received: {name}={_describe(value)}"
        )
    return value


def check_pair(name, value, check_item, example):
    """A pair (list or tuple of two), each item passing `check_item(item_name, item)`."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(
            f"Expected `{name}` to be a pair, e.g. {example}. Received: {name}={_describe(value)}"
        )
    items = []
    for index, item in enumerate(value):
        try:
            items.append(check_item(f"{name}[{index}]", item))
        except ValueError as error:
            raise ValueError(f"{error} (in {name}={tuple(value)!r}; e.g. {example})") from None
    return tuple(items)


def compile_regex(name, pattern):
    """A compiled regular expression, or a ValueError naming the argument and the fix."""
    if not isinstance(pattern, str):
        raise TypeError(
            f"Expected `{name}` to be a regular expression string. "
            f"Received: {name}={_describe(pattern)}"
        )
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"Expected `{name}` to be a valid regular expression. Received: {name}={pattern!r} "
            f"({error}). Escape special characters with re.escape()."
        ) from error


def check_path(name, value):
    """A non-empty path (str or os.PathLike), as a str."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(
            f"Expected `{name}` to be a non-empty file or directory path. "
            f"Received: {name}={_describe(value)}"
        )
    return os.fspath(value)


def layer_filter(filters):
    """A predicate from `filters`: None (all), a regex, a list of regexes, or a callable."""
    if filters is None:
        return lambda layer: True
    if callable(filters):
        return filters
    if isinstance(filters, str):
        filters = [filters]
    if isinstance(filters, (list, tuple)) and all(isinstance(f, str) for f in filters):
        patterns = [compile_regex("filters", pattern) for pattern in filters]
        return lambda layer: any(pattern.search(layer.name) for pattern in patterns)
    raise TypeError(
        "Expected `filters` to be None, a regex string, a list of regex strings, or a callable "
        f"taking a layer and returning a bool. Received: filters={filters!r}"
    )


def did_you_mean(value, names):
    """ " Did you mean 'name'?" for the known name closest to `value`, or ""."""
    if not isinstance(value, str):
        return ""
    names = [str(name) for name in names]
    lowered = {name.lower(): name for name in names}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    if not close:
        close = [name for name in lowered if name.startswith(value.lower()) and value]
    return f" Did you mean {lowered[close[0]]!r}?" if close else ""


def check_callable(name, value):
    if not callable(value):
        raise TypeError(
            f"Expected `{name}` to be callable (a function). Received: {name}={_describe(value)}"
        )
    return value


def check_model(name, value, built=True):
    """A `keras.Model` (built, unless `built=False`), or an error saying what to pass."""
    if not isinstance(value, keras.Model):
        hint = ""
        if isinstance(value, (str, os.PathLike)):
            hint = f" Load it first: {name} = keras.saving.load_model({os.fspath(value)!r})."
        elif isinstance(value, keras.layers.Layer):
            hint = " Wrap the layer in a keras.Sequential or functional keras.Model."
        raise TypeError(
            f"Expected `{name}` to be a keras.Model. Received: {name}={_describe(value)}.{hint}"
        )
    if built and not value.built:
        raise ValueError(
            f"Expected `{name}` to be built. Received: {name}={value.name!r}, which is not built: "
            "start it with keras.Input(shape) or call model.build(input_shape) first."
        )
    return value


def check_graph_model(name, value):
    """A built Sequential or Functional model (one whose layer graph can be read), or an error."""
    check_model(name, value)
    try:
        value.inputs  # noqa: B018 (a subclassed model has no graph: reading it raises)
    except AttributeError:
        raise ValueError(
            f"Expected `{name}` to be a Sequential or Functional model (its layer graph is read). "
            f"Received: {name}={value.name!r}, a subclassed {type(value).__name__} whose `call` "
            "is Python code. Rebuild it with the functional API (keras.Input -> layers -> "
            "keras.Model) to restructure it."
        ) from None
    return value
