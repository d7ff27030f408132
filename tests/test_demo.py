"""`keras-prune demo` (README's first command): the table it prints is the run's own numbers."""

import json
import os
import warnings

import pytest

from keras_prune.cli import main


@pytest.mark.slow
def test_demo_prints_the_table_of_the_files_it_wrote(tmp_path, capsys):
    out = tmp_path / "artifacts"
    arguments = ["--epochs", "2", "--dense-epochs", "1", "--latency-runs", "3", "--out", str(out)]
    assert main(["demo", *arguments]) == 0
    printed = capsys.readouterr().out
    assert "stage" in printed  # to_tflite's progress bar, turned on by the demo
    with open(out / "digits_pruned.pruning.json") as handle:
        record = json.load(handle)
    for target in ("mobile", "mcu"):
        pair = record["exports"][target]
        for version in ("dense", "pruned"):
            result = pair[version]
            assert result["passed"]
            assert os.path.getsize(result["path"]) == result["file_bytes"]
        sizes = f"{pair['dense']['file_bytes']:,}", f"{pair['pruned']['file_bytes']:,}"
        line = next(line for line in printed.splitlines() if line.startswith(f"{target} file"))
        assert line.split()[3:5] == list(sizes)
    assert {check["runtime"] for check in record["exports"]["mcu"]["pruned"]["checks"]} >= {"tflm"}
    arena = next(line for line in printed.splitlines() if line.startswith("mcu TFLM arena"))
    assert f"{record['exports']['mcu']['pruned']['arena_bytes']:,}" in arena
    assert (out / "export" / "digits_pruned_mcu_data.cc").exists()
    assert (out / "report.md").exists() and (out / "digits_pruned.keras").exists()


def test_the_dense_and_pruned_files_are_timed_again_side_by_side(tmp_path, monkeypatch):
    # Each export times its own file, minutes apart; the report's before/after latency comes
    # from one interleaved timing of both files instead (real files, the real runtime).
    import keras
    import numpy as np

    import keras_prune as kp
    from keras_prune.demo import digits

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32), keras.layers.Dense(4)])
    pair = {
        version: kp.export.to_tflite(model, str(tmp_path / f"{version}.tflite"), latency_runs=3)
        for version in ("dense", "pruned")
    }
    calls, measure = [], kp.export.measure_latencies

    def spy(paths, **options):
        calls.append((list(paths), options))
        found = measure(paths, **options)
        calls[-1] += (found,)
        return found

    monkeypatch.setattr(kp.export, "measure_latencies", spy)
    timed = digits._timed_side_by_side(pair, 3, rounds=2)
    ((paths, options, found),) = calls
    assert paths == [pair["dense"].path, pair["pruned"].path] and options["rounds"] == 2
    assert [timed[v].latency_us["xnnpack"] for v in ("dense", "pruned")] == found
    assert all(np.isfinite(found)) and min(found) > 0
    # The dict form (exports made in a TensorFlow child process) and files not timed.
    as_dicts = {version: result.to_dict() for version, result in pair.items()}
    timed = digits._timed_side_by_side(as_dicts, 3, rounds=1)
    assert timed["pruned"]["latency_us"]["xnnpack"] == calls[-1][2][1]
    assert digits._timed_side_by_side(pair, 0) is pair
    # Timed on different runtimes by the exports (XNNPACK refused one file): kept, with a
    # warning naming the target, rather than a ratio of timings made minutes apart in silence.
    as_dicts["pruned"]["latency_us"] = {"builtin": as_dicts["pruned"]["latency_us"]["builtin"]}
    with pytest.warns(UserWarning, match=r"mobile: the dense and pruned files could not be"):
        kept = digits._timed_side_by_side(as_dicts, 3, rounds=1, target="mobile")
    assert kept is as_dicts and len(calls) == 2
    # Files not timed at all have no ratio to mislead: no warning.
    untimed = {version: {**result, "latency_us": {}} for version, result in as_dicts.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert digits._timed_side_by_side(untimed, 3) is untimed
