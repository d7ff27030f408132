"""The demo behind README's first command and `keras-prune demo`: train, prune, strip, export,
verify, compare, report, on scikit-learn's bundled digits (offline, a few minutes on 2 cores)."""

from keras_prune.demo.digits import build_cnn, load_data, run

__all__ = ["build_cnn", "load_data", "run"]
