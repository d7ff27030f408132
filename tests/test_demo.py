"""`keras-prune demo` (README's first command): the table it prints is the run's own numbers."""

import json
import os

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
