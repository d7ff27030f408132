"""kp.reporting.report: the report states the numbers of the run that produced it.

Every expectation here is computed again from the models, the History and the files of the run,
never typed in, so a report that drifted from what happened fails.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp
from keras_prune.reporting import plots, pruning_plots
from keras_prune.reporting.report import comparison_rows, format_value

EPOCHS = 3


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (x, y), (x_test, y_test) = digits
    dense = compile_for_digits(small_cnn())
    dense.fit(x, y, epochs=1, batch_size=64, verbose=0)
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]
    steps_per_epoch = int(np.ceil(len(x) / 64))
    schedule = kp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2 * steps_per_epoch, frequency=5)
    pruned = kp.prune(dense, schedule=schedule, filters=["conv2", "dense1"])
    compile_for_digits(pruned, 1e-3)
    history = pruned.fit(
        x, y, epochs=EPOCHS, batch_size=64, verbose=0, callbacks=[kp.PruningCallback()]
    )
    pruned_accuracy = pruned.evaluate(x_test, y_test, verbose=0)[1]
    plain = kp.strip(pruned)
    model_path = str(out / "models" / "pruned.keras")
    exports = {
        "mobile": {
            "dense": {"path": str(out / "d.tflite"), "file_bytes": 4000, "gzip_bytes": 3700,
                      "latency_us": {"xnnpack": 20.5}, "checks": [], "passed": True},
            "pruned": {"path": str(out / "p.tflite"), "file_bytes": 1500, "gzip_bytes": 1200,
                       "latency_us": {"xnnpack": 18.25}, "checks": [], "passed": True},
        }
    }  # fmt: skip
    result = kp.reporting.report(
        out / "report.md",
        pruned,
        dense_model=dense,
        history=history,
        steps_per_epoch=steps_per_epoch,
        metrics={"test accuracy": (dense_accuracy, pruned_accuracy)},
        exports=exports,
        model_paths={"dense": str(out / "dense.keras"), "pruned": model_path},
    )
    text = (out / "report.md").read_text()
    return dict(
        result=result,
        text=text,
        dense=dense,
        pruned=pruned,
        plain=plain,
        history=history,
        accuracy=(dense_accuracy, pruned_accuracy),
        model_path=model_path,
        out=out,
    )


def _nonzeros(model):
    return sum(int(np.count_nonzero(keras.ops.convert_to_numpy(w))) for w in model.weights)


def test_the_before_after_table_holds_the_runs_numbers(run):
    text, dense, plain = run["text"], run["dense"], run["plain"]
    before, after = run["accuracy"]
    assert f"| test accuracy | {before:.4f} | {after:.4f} |" in text
    assert f"| parameters | {dense.count_params():,} | {plain.count_params():,} |" in text
    assert f"| nonzero parameters | {_nonzeros(dense):,} | {_nonzeros(plain):,} |" in text
    assert "| mobile file bytes | 4,000 | 1,500 | 0.38x |" in text
    assert "| mobile LiteRT latency (us) | 20.5 | 18.2 |" in text
    # The terminal table is the same rows.
    table = str(run["result"]).splitlines()
    for name, first, second in comparison_rows(run["result"].record):
        (line,) = [line for line in table if line.startswith(f"{name}  ")]
        assert line.split()[-3:-1] == [format_value(first), format_value(second)]


def test_per_layer_rows_match_the_stripped_weights(run):
    for layer in run["plain"].layers:
        if not layer.weights:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        sparsity = 1 - np.count_nonzero(kernel) / kernel.size
        pruned = "yes" if layer.name in ("conv2", "dense1") else "no"
        shape = "x".join(str(d) for d in kernel.shape)
        row = (
            f"| {layer.name} | kernel | {shape} | {kernel.size:,} | "
            f"{np.count_nonzero(kernel):,} | {sparsity:.1%} | {pruned} |"
        )
        assert row in run["text"]
    assert "`conv1`: excluded by `filters`" in run["text"]


def test_decisions_name_the_schedule_and_the_defaults(run):
    (group,) = run["result"].record["decisions"]
    assert sorted(group["layers"]) == ["conv2", "dense1"]
    assert "final_sparsity=0.8" in group["schedule"]["value"]
    assert group["schedule"]["default"] is False
    for setting in ("granularity", "mask", "criterion", "allocation"):
        assert group[setting]["default"] is True, setting
    assert "| criterion | `Magnitude()` | kp.prune's default |" in run["text"]


def test_the_training_table_is_the_history(run):
    history = run["history"].history
    assert len(history["sparsity"]) == EPOCHS
    last = f"| {EPOCHS} | " + " | ".join(f"{history[k][-1]:.4f}" for k in sorted(history))
    assert last in run["text"]
    # The schedule ended during epoch 2: the last logged sparsity is what the layers hold.
    wrapped = [run["plain"].get_layer(name).kernel for name in ("conv2", "dense1")]
    zeros = sum(int(np.sum(keras.ops.convert_to_numpy(k) == 0)) for k in wrapped)
    total = sum(int(np.prod(k.shape)) for k in wrapped)
    assert history["sparsity"][-1] == pytest.approx(zeros / total, abs=1e-6)


def test_the_record_is_saved_as_json_next_to_the_pruned_model(run):
    result = run["result"]
    assert result.record_path == os.path.splitext(run["model_path"])[0] + ".pruning.json"
    with open(result.record_path) as handle:
        assert json.load(handle) == result.record
    assert "- pruned: `models/pruned.keras`" in run["text"]


def test_the_plots_are_written_and_linked(run):
    pytest.importorskip("matplotlib")
    assert set(run["result"].plots) == {"layer_sparsity", "schedule", "before_after"}
    for png in run["result"].plots.values():
        with open(png, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"]({os.path.basename(png)})" in run["text"]


def test_the_schedule_curve_holds_between_updates():
    schedule = kp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, frequency=10)
    steps, sparsities = pruning_plots.scheduled_sparsity(schedule, 120)
    assert steps == list(range(121))
    assert sparsities[15] == sparsities[10] == pytest.approx(schedule.sparsity_at(10))
    assert sparsities[120] == pytest.approx(0.9)


def test_a_history_without_sparsity_says_what_to_pass():
    with pytest.raises(ValueError, match="PruningCallback"):
        pruning_plots.realised_sparsity_history({"loss": [1.0]}, 10)


def test_without_matplotlib_the_report_is_written_and_says_how_to_get_plots(
    run, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install keras-prune\[plots\]"):
        plots.pyplot()
    with pytest.warns(UserWarning, match="keras-prune"):
        result = kp.reporting.report(tmp_path / "r.md", run["pruned"], plots=True)
    assert result.plots == {}
    assert "Plots not drawn" in (tmp_path / "r.md").read_text()


def test_arguments_are_checked_where_they_enter(run, tmp_path):
    with pytest.raises(ValueError, match="before, after"):
        kp.reporting.report(tmp_path / "r.md", run["pruned"], metrics={"acc": 0.9}, plots=False)
    with pytest.raises(ValueError, match="exports"):
        kp.reporting.report(tmp_path / "r.md", run["pruned"], exports={"mcu": 1}, plots=False)
    with pytest.raises(TypeError, match="pruned_model"):
        kp.reporting.report(tmp_path / "r.md", "model.keras")
