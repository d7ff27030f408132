"""Post-training pruning and transformer structure benchmark, measured in one run.

1. lm: a causal byte-level Transformer LM (4 blocks, about 5M parameters) is trained here on the
   Python standard library's own source files (the same text on every machine), with held-out
   perplexity on files it never saw. It is then pruned without fine-tuning at 50% unstructured
   and at 2:4 by magnitude, Wanda and SparseGPT (attention projections and feed-forward layers,
   as in the papers; embeddings and the output layer stay dense). Each method runs in its own
   child process: time of `kp.posttraining.prune_posttraining`, peak RSS
   (`resource.getrusage`) before and after it, perplexity.
2. hub: a keras-hub BertBackbone built from a BERT-base config (about 110M parameters, random
   weights) pruned by SparseGPT layer by layer, in a child process: time and peak RSS.
3. digits: a small CNN trained on scikit-learn's digits, pruned one shot without fine-tuning by
   magnitude, Wanda and SparseGPT at 50-90%: test accuracy.
4. structure: the LM with 25% / 50% of its attention heads, 50% of its feed-forward neurons, 1
   or 2 transformer layers removed (`kp.shrink`): parameters and perplexity, without and with a
   short fine-tune (the dense model fine-tuned the same steps is the control).

Run: `python benchmarks/bench_posttraining.py --out build/bench_posttraining` (about 40-60
minutes on 2 shared cores: training the LM takes `--train-minutes`, 12 by default; the trained
weights are cached in `--out` and reused). `--quick` runs every section at toy sizes.
"""

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import sysconfig
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_prune as kp  # noqa: E402

FULL = {"length": 128, "dim": 320, "heads": 8, "ffn": 1280, "blocks": 4, "batch": 16}
QUICK = {"length": 32, "dim": 32, "heads": 4, "ffn": 64, "blocks": 2, "batch": 8}
PRUNED_LAYERS = r"^(attn|ffn)"  # the papers prune the blocks' linear layers only


# -- data ---------------------------------------------------------------------------------------


def stdlib_bytes():
    """(training bytes, held-out bytes): the stdlib's .py files, every 10th file held out."""
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(
        path
        for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
        if "site-packages" not in path and f"{os.sep}test" not in path
    )
    train, held_out = [], []
    for index, path in enumerate(files):
        with open(path, "rb") as handle:
            (held_out if index % 10 == 0 else train).append(handle.read())
    return np.frombuffer(b"\n".join(train), np.uint8), np.frombuffer(b"\n".join(held_out), np.uint8)


def windows(data, length, count, seed):
    """`count` random windows of `length + 1` bytes: (inputs, next-byte targets)."""
    starts = np.random.default_rng(seed).integers(0, len(data) - length - 1, count)
    chunks = np.stack([data[s : s + length + 1] for s in starts]).astype("int32")
    return chunks[:, :-1], chunks[:, 1:]


# -- model --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="bench_posttraining")
class AddPositions(keras.layers.Layer):
    """Learned position embeddings added to the token embeddings."""

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=(self.length, input_shape[-1]), initializer="random_normal", name="positions"
        )

    def call(self, inputs):
        return inputs + self.positions[: ops.shape(inputs)[1]]

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def language_model(size, seed=0):
    """Pre-LayerNorm causal Transformer over bytes, built from Keras layers."""
    keras.utils.set_random_seed(seed)
    dim, heads = size["dim"], size["heads"]
    tokens = keras.Input((size["length"],), dtype="int32", name="tokens")
    x = keras.layers.Embedding(256, dim, name="embed")(tokens)
    x = AddPositions(size["length"], name="positions")(x)
    for i in range(size["blocks"]):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_a{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"attn{i}")(
            h, h, use_causal_mask=True
        )
        x = keras.layers.Add(name=f"res_a{i}")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_f{i}")(x)
        h = keras.layers.Dense(size["ffn"], activation="gelu", name=f"ffn_in{i}")(h)
        h = keras.layers.Dense(dim, name=f"ffn_out{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_out")(x)
    return keras.Model(tokens, keras.layers.Dense(256, name="logits")(x), name="byte_lm")


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_lm(model, learning_rate, steps=None):
    schedule = learning_rate
    if steps:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps, warmup_target=learning_rate, warmup_steps=max(steps // 20, 1)
        )
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0), LOSS, jit_compile=True
    )
    return model


def perplexity(model, x, y):
    logits = model.predict(x, batch_size=32, verbose=0)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, y[..., None], -1).mean()
    return float(np.exp(nll))


class StopAfter(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.deadline = time.perf_counter() + seconds
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.perf_counter() > self.deadline:
            self.model.stop_training = True


def train_lm(size, data, minutes, out):
    path = os.path.join(out, f"byte_lm_{size['dim']}x{size['blocks']}.weights.h5")
    model = language_model(size)
    if os.path.exists(path):
        model.load_weights(path)
        with open(path + ".json") as handle:
            return model, path, json.load(handle)
    # Planned steps at the speed of the first ones, so the cosine schedule ends on time.
    probe_x, probe_y = windows(data, size["length"], size["batch"] * 3, seed=99)
    compile_lm(model, 2e-3)
    model.fit(probe_x, probe_y, batch_size=size["batch"], verbose=0)  # compile
    start = time.perf_counter()
    model.fit(probe_x, probe_y, batch_size=size["batch"], verbose=0)
    step_seconds = (time.perf_counter() - start) / 3
    steps = max(int(minutes * 60 / step_seconds), 10)
    model = language_model(size)
    compile_lm(model, 2e-3, steps)
    x, y = windows(data, size["length"], steps * size["batch"], seed=1)
    stop = StopAfter(minutes * 60 * 1.2)
    start = time.perf_counter()
    model.fit(x, y, batch_size=size["batch"], epochs=1, verbose=2, callbacks=[stop])
    info = {
        "steps": stop.steps,
        "tokens": stop.steps * size["batch"] * size["length"],
        "seconds": time.perf_counter() - start,
        "parameters": model.count_params(),
    }
    model.save_weights(path)
    with open(path + ".json", "w") as handle:
        json.dump(info, handle)
    return model, path, info


def fine_tune(model, data, size, steps, seed):
    x, y = windows(data, size["length"], steps * size["batch"], seed=seed)
    compile_lm(model, 3e-4)
    model.fit(x, y, batch_size=size["batch"], epochs=1, verbose=0)
    return model


# -- child processes ------------------------------------------------------------------------------


def _status_mb(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def rss_now_mb():
    """Resident memory now."""
    try:
        return _status_mb("VmRSS")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Start a new high-water mark of resident memory (Linux: `5 > /proc/self/clear_refs`).

    `resource.getrusage(...).ru_maxrss` cannot be used alone: on Linux a process started by
    fork + exec inherits its parent's peak in `ru_maxrss`, so a child started from this
    (TensorFlow-loaded) benchmark would report the parent's memory. The child's own high-water
    mark, `VmHWM`, starts fresh at exec and can be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mb():
    """High-water mark of resident memory since `reset_peak_rss` (or the process start)."""
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_lm(job):
    size = job["size"]
    model = language_model(size)
    model.load_weights(job["weights"])
    calibration = np.load(job["calibration"])
    held_x, held_y = np.load(job["held_x"]), np.load(job["held_y"])
    model.predict(held_x[:2], verbose=0)
    before = rss_now_mb()
    reset_peak_rss()
    start = time.perf_counter()
    if job["method"] != "dense":
        model = kp.posttraining.prune_posttraining(
            model,
            calibration,
            method=job["method"],
            sparsity=job["sparsity"],
            granularity=job["granularity"],
            filters=PRUNED_LAYERS,
            batch_size=16,
            verbose=0,
        )
    seconds = time.perf_counter() - start
    after = peak_rss_mb()
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": after,
        "perplexity": perplexity(model, held_x, held_y),
    }


def child_hub(job):
    import keras_hub

    config = job["config"]
    backbone = keras_hub.models.BertBackbone(**config)
    rng = np.random.default_rng(0)
    samples, length = job["samples"], job["length"]
    x = {
        "token_ids": rng.integers(0, config["vocabulary_size"], (samples, length)),
        "segment_ids": np.zeros((samples, length), "int32"),
        "padding_mask": np.ones((samples, length), "int32"),
    }
    backbone.predict({k: v[:2] for k, v in x.items()}, verbose=0)
    before = rss_now_mb()
    reset_peak_rss()
    start = time.perf_counter()
    pruned = kp.posttraining.prune_posttraining(
        backbone, x, method="sparsegpt", sparsity=0.5, batch_size=8, verbose=0
    )
    seconds = time.perf_counter() - start
    report = pruned.posttraining_report
    return {
        "parameters": backbone.count_params(),
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
        "weights_pruned": len(report.weights),
        "layers": len(kp.layers.find_wrappers(pruned)),
        "mean_error": float(np.mean([row["error"] for row in report.weights])),
    }


def run_child(job):
    """Run `job` in a fresh Python process; returns its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"child {job['kind']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- sections -----------------------------------------------------------------------------------


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def lm_section(size, train, held_out, minutes, out, quick):
    model, weights, info = train_lm(size, train, minutes, out)
    held_x, held_y = windows(held_out, size["length"], 16 if quick else 128, seed=7)
    calibration, _ = windows(train, size["length"], 16 if quick else 128, seed=3)
    paths = {}
    for name, array in (("held_x", held_x), ("held_y", held_y), ("calibration", calibration)):
        paths[name] = os.path.join(out, f"{name}.npy")
        np.save(paths[name], array)
    print(
        f"\nLM: {info['parameters']:,} parameters, trained {info['steps']} steps "
        f"({info['tokens']:,} tokens, {info['seconds'] / 60:.1f} min); calibration "
        f"{len(calibration)} x {size['length']} bytes; held-out {len(held_x)} x {size['length']}"
    )
    rows, results = [], {}
    settings = [("dense", "unstructured", 0.5)] + [
        (method, granularity, 0.5)
        for granularity in ("unstructured", "2:4")
        for method in ("magnitude", "wanda", "sparsegpt")
    ]
    for method, granularity, sparsity in settings:
        job = {
            "kind": "lm",
            "size": size,
            "weights": weights,
            "method": method,
            "granularity": granularity,
            "sparsity": sparsity,
            **paths,
        }
        result = run_child(job)
        results[f"{method} {granularity}"] = result
        rows.append(
            [
                method,
                "-" if method == "dense" else ("50%" if granularity == "unstructured" else "2:4"),
                f"{result['perplexity']:.3f}",
                f"{result['seconds']:.1f}",
                f"{result['rss_before_mb']:.0f}",
                f"{result['rss_peak_mb']:.0f}",
            ]
        )
        print(f"  {method} {granularity}: {result}", flush=True)
    print(
        table(
            [
                "method",
                "sparsity",
                "held-out perplexity",
                "seconds",
                "RSS before MB",
                "peak during MB",
            ],
            rows,
        )
    )
    return model, info, results


def hub_section(quick):
    if quick:
        config = dict(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
                      intermediate_dim=128, max_sequence_length=32)  # fmt: skip
        samples, length = 16, 32
    else:
        config = dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768,
                      intermediate_dim=3072, max_sequence_length=512)  # fmt: skip
        samples, length = 64, 128
    result = run_child({"kind": "hub", "config": config, "samples": samples, "length": length})
    print(f"\nkeras-hub BertBackbone {result['parameters']:,} parameters, SparseGPT 50%, "
          f"{samples} x {length} calibration tokens")  # fmt: skip
    print(
        table(
            [
                "layers",
                "weights pruned",
                "seconds",
                "RSS before MB",
                "peak during MB",
                "mean rel. error",
            ],
            [
                [
                    result["layers"],
                    result["weights_pruned"],
                    f"{result['seconds']:.0f}",
                    f"{result['rss_before_mb']:.0f}",
                    f"{result['rss_peak_mb']:.0f}",
                    f"{result['mean_error']:.3f}",
                ]
            ],  # fmt: skip
        )
    )
    return result


def digits_section(quick):
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    labels = data.target.astype("int32")
    split = int(0.8 * len(images))
    x, y, x_test, y_test = images[:split], labels[:split], images[split:], labels[split:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=3 if quick else 30, batch_size=32, verbose=0)

    def accuracy(m):
        return float(np.mean(m.predict(x_test, verbose=0).argmax(-1) == y_test))

    dense = accuracy(model)
    sparsities = (0.5, 0.9) if quick else (0.5, 0.6, 0.7, 0.8, 0.9)
    rows, results = [], {}
    for sparsity in sparsities:
        row = [f"{sparsity:.0%}"]
        for method in ("magnitude", "wanda", "sparsegpt"):
            start = time.perf_counter()
            pruned = kp.posttraining.prune_posttraining(
                model, x[:256], method=method, sparsity=sparsity, verbose=0
            )
            seconds = time.perf_counter() - start
            results[f"{method} {sparsity}"] = (accuracy(pruned), seconds)
            row.append(f"{results[f'{method} {sparsity}'][0]:.3f} ({seconds:.1f}s)")
        rows.append(row)
    print(f"\nDigits CNN ({model.count_params():,} parameters), dense test accuracy "
          f"{dense:.3f}; one shot, no fine-tuning, every conv and dense layer, 256 calibration "
          "images")  # fmt: skip
    print(table(["sparsity", "magnitude", "Wanda", "SparseGPT"], rows))
    return dense, results


def structure_section(size, train, held_out, weights, out, quick):
    held_x, held_y = windows(held_out, size["length"], 16 if quick else 128, seed=7)
    calibration, _ = windows(train, size["length"], 16 if quick else 64, seed=3)
    steps = 5 if quick else 60

    def load():
        model = language_model(size)
        model.load_weights(weights)
        return model

    dense = load()
    variants = [("dense", lambda: dense)]
    for fraction in (0.25, 0.5):
        variants.append(
            (f"heads -{fraction:.0%}",
             lambda f=fraction: kp.shrink(kp.surgery.heads.mask_heads(load(), f, calibration)))
        )  # fmt: skip
    variants.append(
        (
            "ffn neurons -50%",
            lambda: kp.shrink(kp.surgery.ffn.mask_neurons(load(), 0.5, calibration)),
        )
    )
    for count in (1,) if quick else (1, 2):
        variants.append(
            (f"depth -{count} layer(s)",
             lambda c=count: kp.surgery.depth.prune_depth(load(), c, calibration, span=2))
        )  # fmt: skip
    rows, results = [], {}
    for name, make in variants:
        start = time.perf_counter()
        model = make()
        seconds = time.perf_counter() - start
        before = perplexity(model, held_x, held_y)
        params = model.count_params()
        removed = getattr(model, "depth_report", None)
        tuned = fine_tune(model, train, size, steps, seed=11)
        after = perplexity(tuned, held_x, held_y)
        results[name] = {"parameters": params, "perplexity": before, "tuned": after}
        note = f" ({', '.join(removed.removed)})" if removed is not None else ""
        rows.append([name + note, f"{params:,}", f"{before:.3f}", f"{after:.3f}", f"{seconds:.1f}"])
        print(f"  {name}: {results[name]}", flush=True)
    print(f"\nLM structure pruning (activation importance, {len(calibration)} calibration "
          f"sequences), then kp.shrink; fine-tune: {steps} steps of {size['batch']} x "
          f"{size['length']} bytes, AdamW 3e-4")  # fmt: skip
    print(
        table(["variant", "parameters", "perplexity", "after fine-tune", "prune + shrink s"], rows)
    )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench_posttraining")
    parser.add_argument("--quick", action="store_true", help="toy sizes (a few minutes)")
    parser.add_argument("--train-minutes", type=float, default=12.0)
    parser.add_argument("--sections", default="lm,hub,digits,structure")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        result = child_lm(job) if job["kind"] == "lm" else child_hub(job)
        print(json.dumps(result))
        return
    os.makedirs(args.out, exist_ok=True)
    size = QUICK if args.quick else FULL
    minutes = 0.2 if args.quick else args.train_minutes
    sections = set(args.sections.split(","))
    train, held_out = stdlib_bytes()
    print(f"stdlib text: {len(train):,} training bytes, {len(held_out):,} held-out bytes")
    summary = {}
    if "lm" in sections or "structure" in sections:
        _, weights, info = train_lm(size, train, minutes, args.out)
        summary["training"] = info
    if "lm" in sections:
        summary["lm"] = lm_section(size, train, held_out, minutes, args.out, args.quick)[2]
    if "hub" in sections:
        summary["hub"] = hub_section(args.quick)
    if "digits" in sections:
        summary["digits"] = digits_section(args.quick)
    if "structure" in sections:
        summary["structure"] = structure_section(
            size, train, held_out, weights, args.out, args.quick
        )
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
