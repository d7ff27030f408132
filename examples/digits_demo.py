"""Demo: the whole path from a dense CNN to verified phone and microcontroller files.

Trains a small CNN on scikit-learn's bundled digits, prunes it to 90% sparsity with a polynomial
schedule while fine-tuning, strips it, exports the dense and the pruned model for `mobile`
(LiteRT) and `mcu` (TFLM, with the C array), each checked against Keras on its runtimes, prints
one before/after table and writes a report (Markdown, PNG plots, JSON pruning record). Runs
offline in about three minutes on 2 CPU cores.

This script is `keras-prune demo`; the code it runs, step by step, is
`keras_prune/demo/digits.py` (`keras_prune.demo.run`).

    python examples/digits_demo.py [--sparsity 0.9] [--epochs 12] [--out artifacts]
"""

import os
import sys

# Before TensorFlow is imported (through keras_prune): keep its C++ start-up messages out.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_prune.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
