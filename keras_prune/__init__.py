"""keras_prune: pruning for Keras 3, exported to TFLite / LiteRT."""

__version__ = "0.1.0"
