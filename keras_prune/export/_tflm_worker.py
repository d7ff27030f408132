"""Runs a model on TensorFlow Lite Micro's interpreter, in its own process.

TFLM's Python interpreter ends the whole process with a segmentation fault when the arena is too
small (and on some unsupported encodings), so `verify.py` runs this file as a script: it imports
only NumPy and tflite_micro, and its exit status tells the parent what happened.

Usage: python _tflm_worker.py MODEL.tflite ARENA_BYTES [INPUTS.npy OUTPUTS.npy]
INPUTS.npy holds samples already in the input tensor's dtype, one per row; OUTPUTS.npy receives
the raw output tensor of each sample. Without them, one all-zero sample is run.
"""

import sys

import numpy as np
from tflite_micro import runtime


def main(argv):
    model_path, arena_bytes = argv[0], int(argv[1])
    with open(model_path, "rb") as handle:
        model = handle.read()
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    details = interpreter.get_input_details(0)
    if len(argv) > 2:
        samples = np.load(argv[2])
    else:
        samples = np.zeros((1, *details["shape"][1:]), dtype=details["dtype"])
    outputs = []
    for sample in samples:
        interpreter.set_input(sample[None].astype(details["dtype"]), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    if len(argv) > 3:
        np.save(argv[3], np.stack(outputs))
    interpreter.print_allocations()
    sys.stderr.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
