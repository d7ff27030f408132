"""Native work run in child processes, so that a crash ends the child and not the user's process.

TensorFlow's converter, the LiteRT interpreter, TensorFlow Lite Micro and HDF5 can all end a
process with a segmentation fault on bad input (docs/export.md): non-finite int8 calibration
data, an LSTM quantized to int8, a corrupted `.tflite` or weights file, a too-small TFLM arena.
`isolation.py` runs this file as a script (through runpy with -P, so this directory never goes
first on sys.path) and turns a crash into an exception naming the stage. It imports only NumPy
and the one native library each command needs, so starting it is quick; the converter instead
runs in children forked from a long-lived server that imported TensorFlow once.

Commands (every path in a job directory the parent made):
    serve                 read job directories from stdin, fork a child converting each
    convert JOB           convert once in this process (platforms without fork)
    litert JOB            verification runs and latency on LiteRT, steps listed in JOB/job.json
    tflm MODEL ARENA IN [OUT COUNT]   run on TFLM with the given arena (.npz by position)
    keras-weights FILE    read every array of a .keras file's HDF5 weights
Progress goes to JOB/stage (the step being run), results to files in JOB, errors to
JOB/error.json; the exit status says whether the step finished.
"""

import json
import os
import select
import signal
import sys

import numpy as np

# A conversion server that has had no job for this long exits; the parent starts a new one
# when it needs it, so an idle process does not hold TensorFlow's memory forever.
SERVER_IDLE_SECONDS = 600
_CRASH_AT = "KERAS_PRUNE_TEST_CRASH_AT"


def _write_json(path, data):
    with open(path + ".part", "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(path + ".part", path)


def _stage(job, name):
    with open(os.path.join(job, "stage"), "w", encoding="utf-8") as handle:
        handle.write(name)
        handle.flush()
    _crash_if_asked(name)


def _crash_if_asked(stage):
    # Test hook: end this process with SIGSEGV at the named stage, as a native crash would.
    if os.environ.get(_CRASH_AT) == stage:
        os.kill(os.getpid(), signal.SIGSEGV)


def _redirect_output(path):
    """Sends this process's stdout and stderr (C++ logging included) to `path`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def convert(job):
    """Converts JOB/saved_model with JOB/settings.json (and JOB/calibration.npz) to
    JOB/model.tflite, or writes the converter's error to JOB/error.json."""
    import tensorflow as tf

    with open(os.path.join(job, "settings.json"), encoding="utf-8") as handle:
        settings = json.load(handle)
    _stage(job, "convert")
    converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(job, "saved_model"))
    optimizations = []
    if settings["quantize"]:
        names = settings["input_names"]
        with np.load(os.path.join(job, "calibration.npz")) as stored:
            samples = [stored[f"i{i}"] for i in range(len(names))]

        def representative_dataset():
            for row in range(len(samples[0])):
                yield {
                    name: array[row : row + 1] for name, array in zip(names, samples, strict=True)
                }

        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if settings["sparse_encoding"]:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    try:
        data = converter.convert()
    except Exception as error:  # The converter raises its own ConverterError class.
        _write_json(os.path.join(job, "error.json"), {"message": str(error)})
        return 1
    with open(os.path.join(job, "model.tflite.part"), "wb") as handle:
        handle.write(data)
    os.replace(os.path.join(job, "model.tflite.part"), os.path.join(job, "model.tflite"))
    return 0


def serve():
    """Imports TensorFlow once, then forks a child for every job directory read from stdin.

    Replies on stdout: `ready` (or `failed <reason>`) after the import, then `pid <pid>` and
    `done <wait status>` for each job. Exits on end of input or after SERVER_IDLE_SECONDS.
    """
    try:
        import tensorflow as tf

        tf.lite.TFLiteConverter  # noqa: B018 -- resolves TensorFlow's lazy lite module now
    except Exception as error:  # An import failure is reported to the parent, not raised.
        print(f"failed {type(error).__name__}: {error}".replace("\n", " "), flush=True)
        return 1
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], SERVER_IDLE_SECONDS)
        if not readable:
            return 0
        line = sys.stdin.readline()
        if not line:
            return 0
        job = line.strip()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _redirect_output(os.path.join(job, "converter.log"))
                status = convert(job)
            finally:
                os._exit(status)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"done {status}", flush=True)


def _litert_interpreter(model, xnnpack, threads=1):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=model, experimental_op_resolver_type=resolver, num_threads=threads
    )
    interpreter.allocate_tensors()
    return interpreter


def _set_inputs(interpreter, sample_inputs, row):
    for detail in interpreter.get_input_details():
        values = sample_inputs[f"t{detail['index']}"][row : row + 1]
        interpreter.set_tensor(detail["index"], values.astype(detail["dtype"]))


def litert(job):
    """Runs the steps of JOB/job.json on LiteRT: `predict` (every sample of JOB/inputs.npz,
    outputs to JOB/<name>.npz) and `latency` (median microseconds of timed invocations on the
    first sample, to JOB/latency.json). A step may name its own `model` and `inputs` files in
    JOB (default model.tflite, inputs.npz), so one process can time many small models, and
    its `threads` (default 1)."""
    import statistics
    import time

    with open(os.path.join(job, "job.json"), encoding="utf-8") as handle:
        steps = json.load(handle)["steps"]
    files = {}

    def read(name, loader):
        if name not in files:
            files[name] = loader(os.path.join(job, name))
        return files[name]

    def model_bytes(path):
        with open(path, "rb") as handle:
            return handle.read()

    def arrays(path):
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}

    latency = {}
    for step in steps:
        _stage(job, step["stage"])
        model = read(step.get("model", "model.tflite"), model_bytes)
        inputs = read(step.get("inputs", "inputs.npz"), arrays)
        try:
            interpreter = _litert_interpreter(model, step["xnnpack"], step.get("threads", 1))
        except (ValueError, RuntimeError) as error:
            message = {"stage": step["stage"], "message": str(error)}
            _write_json(os.path.join(job, "error.json"), message)
            return 1
        outputs = [detail["index"] for detail in interpreter.get_output_details()]
        if step["kind"] == "predict":
            count = len(next(iter(inputs.values())))
            results = {f"t{index}": [] for index in outputs}
            for row in range(count):
                _set_inputs(interpreter, inputs, row)
                interpreter.invoke()
                for index in outputs:
                    results[f"t{index}"].append(interpreter.get_tensor(index)[0].copy())
            np.savez(
                os.path.join(job, step["output"]),
                **{key: np.stack(values) for key, values in results.items()},
            )
        else:
            _set_inputs(interpreter, inputs, 0)
            for _ in range(step["warmup"]):
                interpreter.invoke()
            # "thread": CPU time of this thread, which preemption by other processes on a
            # busy machine does not inflate (single-threaded runs only).
            clock = time.thread_time_ns if step.get("clock") == "thread" else time.perf_counter_ns
            timings = []
            for _ in range(step["runs"]):
                start = clock()
                interpreter.invoke()
                timings.append(clock() - start)
            latency[step["name"]] = statistics.median(timings) / 1000.0
    _write_json(os.path.join(job, "latency.json"), latency)
    return 0


def tflm(argv):
    """Runs a model on TFLM with an arena of ARENA bytes on the samples of IN (`i<position>`
    arrays in the input tensors' dtypes); with OUT and COUNT, writes the raw values of the
    first COUNT outputs to OUT (`o<position>`). Arguments: MODEL ARENA IN [OUT COUNT]."""
    from tflite_micro import runtime

    model_path, arena_bytes, inputs_path = argv[0], int(argv[1]), argv[2]
    with open(model_path, "rb") as handle:
        model = handle.read()
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    verifying = len(argv) > 4  # The arena search runs without outputs.
    if verifying:
        _crash_if_asked("verify-tflm")
    with np.load(inputs_path) as stored:
        inputs = [stored[f"i{i}"] for i in range(len(stored.files))]
    output_count = int(argv[4]) if verifying else 0
    outputs = [[] for _ in range(output_count)]
    for row in range(len(inputs[0])):
        for position, values in enumerate(inputs):
            interpreter.set_input(values[row : row + 1], position)
        interpreter.invoke()
        for position in range(output_count):
            outputs[position].append(np.array(interpreter.get_output(position))[0])
    if output_count:
        np.savez(argv[3], **{f"o{i}": np.stack(values) for i, values in enumerate(outputs)})
    interpreter.print_allocations()
    sys.stderr.flush()
    return 0


def keras_weights(path):
    """Reads every dataset of a `.keras` file's HDF5 weights, so a crash in HDF5 on a
    corrupted file happens here; exit 2 when the archive holds no readable weights."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith(".h5")]
        for name in names:
            with h5py.File(io.BytesIO(archive.read(name)), "r") as weights:

                def read(_, item):
                    if isinstance(item, h5py.Dataset):
                        item[()]

                weights.visititems(read)
    return 0


def main(argv):
    command = argv[0]
    if command == "serve":
        return serve()
    if command == "convert":
        job = argv[1]
        _redirect_output(os.path.join(job, "converter.log"))
        return convert(job)
    if command == "litert":
        return litert(argv[1])
    if command == "tflm":
        return tflm(argv[1:])
    if command == "keras-weights":
        return keras_weights(argv[1])
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
