"""On-disk cache of sensitivity curves and latency tables: JSON files named by a hash of what
determines them (model, weights, data, runtime settings).

The directory is `cache_dir=` when given, else `$KERAS_PRUNE_CACHE`, else
`$XDG_CACHE_HOME/keras_prune` (`~/.cache/keras_prune`); `cache_dir=False` turns caching off.
Files are written atomically (a write to a temporary name, then a rename), so several search
workers can share one directory.
"""

import hashlib
import json
import os

import keras
import numpy as np

from keras_prune.core import validation


def directory(cache_dir):
    """The cache directory for `cache_dir` (None: the default), or None when turned off."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        cache_dir = os.environ.get("KERAS_PRUNE_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "keras_prune",
        )
    return validation.check_path("cache_dir", cache_dir)


def key(*parts):
    """A hex digest of JSON-serializable `parts`."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def model_digest(model, weights=True):
    """A hash of a model's architecture (its config) and, with `weights`, its weight values."""
    digest = hashlib.sha256()
    try:
        digest.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    except (NotImplementedError, TypeError):
        digest.update(type(model).__name__.encode())
    for variable in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        digest.update(str((variable.path, value.shape, value.dtype.str)).encode())
        if weights:
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:24]


def load(cache_dir, kind, name):
    """The cached JSON object `kind/name.json`, or None."""
    folder = directory(cache_dir)
    if folder is None:
        return None
    path = os.path.join(folder, kind, f"{name}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def store(cache_dir, kind, name, value):
    """Writes `value` as `kind/name.json` (atomically); returns the path, or None if off."""
    folder = directory(cache_dir)
    if folder is None:
        return None
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    path = os.path.join(folder, kind, f"{name}.json")
    partial = f"{path}.{os.getpid()}.part"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    os.replace(partial, path)
    return path
