"""kp.auto.search: the front, materialization, errors, a resumed study, and one study shared
by worker processes after one of them was killed mid-trial."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import small_cnn

import keras_prune as kp
from keras_prune import auto
from keras_prune.auto.search_result import dominates
from keras_prune.auto.space import SearchSpace

optuna = pytest.importorskip("optuna")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_channel_search_front_resume_and_materialize(trained, digits, tmp_path):
    (x, y), validation = digits
    storage = tmp_path / "study.journal"
    arguments = dict(
        objectives=["accuracy", "macs"],
        constraints=["macs <= 30K"],
        samples=200,
        storage=storage,
        study_name="digits",
        verbose=0,
    )
    result = auto.search(trained, validation, n_trials=4, **arguments)
    assert len(result.candidates) == 4
    # NSGA-II's first population (4 here) is queued inside the MACs budget: every trial is
    # fine-tuned and scored, none is spent on a point the budget rejects.
    assert all(c.feasible for c in result.candidates)
    # Queued trials are NSGA-II's first generation, so the next one breeds from them (Optuna
    # alone leaves trials whose parameters are all fixed out of every generation).
    sampler = result.study.sampler
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    assert sorted(t.number for t in sampler.get_population(result.study, 0)) == [0, 1, 2, 3]
    assert result.front and all(c.feasible for c in result.front)
    for candidate in result.front:
        assert candidate.costs["macs"] <= 30_000
        assert not any(
            dominates(o.values, candidate.values, result.objectives) for o in result.feasible
        )
    assert result.baseline["macs"] > 30_000
    first = {c.number: c.values for c in result.candidates}
    resumed = auto.search(trained, validation, n_trials=5, **arguments)
    assert len(resumed.candidates) == 5
    assert {
        n: c.values for n, c in ((c.number, c) for c in resumed.candidates) if n in first
    } == first
    best = resumed.best(weights={"accuracy": 1.0, "macs": 0.1})
    small = best.materialize()
    assert small.count_params() == best.costs["params"]
    assert small.count_params() < trained.count_params()
    text = resumed.table()
    assert "accuracy (max)" in text and "unpruned" in text
    pytest.importorskip("matplotlib")
    assert open(resumed.plot(tmp_path / "front.png"), "rb").read(4) == b"\x89PNG"


def test_unstructured_single_objective_with_fine_tune(trained, digits, tmp_path):
    train, validation = digits
    result = auto.search(
        trained,
        validation,
        objectives="loss",
        constraints=["params <= 12K"],
        granularity="unstructured",
        criterion="l2",
        fine_tune_data=(train[0][:300], train[1][:300]),
        n_trials=3,
        samples=200,
        storage=tmp_path / "study.db",
        verbose=0,
    )
    assert len(result.front) == 1
    best = result.best()
    pruned = best.materialize()
    sparsity = {row.layer: row.sparsity for row in auto_rows(pruned)}
    for name, value in best.sparsities.items():
        assert sparsity[name] == pytest.approx(value, abs=0.01)


def test_search_prices_channels_with_the_public_shrunk_cost():
    # The space prices a channel choice with `kp.surgery.ShrunkCost` (no private surgery
    # import); its MACs and parameters are those of the model `prune_channels` builds.
    model = small_cnn()
    space = SearchSpace(model, "channel", None, 0.75, 0.25, None, "mobile")
    assert isinstance(space.estimator, kp.surgery.ShrunkCost)
    small = kp.prune_channels(model, 0.5)
    counted = kp.reporting.macs.count(small)
    predicted = space.costs(space.uniform(0.5))
    assert (predicted["macs"], predicted["params"]) == (counted["macs"], counted["params"])


def auto_rows(model):
    from keras_prune.reporting.summary import weight_rows

    return weight_rows(model)


def test_search_errors_name_what_is_wrong(trained, digits, tmp_path):
    _, (x, y) = digits
    storage = tmp_path / "errors.journal"
    common = dict(storage=storage, verbose=0, n_trials=1)
    with pytest.raises(ValueError, match="at least one objective"):
        auto.search(trained, (x, y), objectives=[], **common)
    with pytest.raises(ValueError, match=r"smallest macs reachable is [\d.]+K"):
        auto.search(trained, (x, y), objectives=["accuracy"], constraints=["macs <= 1K"], **common)
    with pytest.raises(ValueError, match=r"validation_data.*\(num_samples, 8, 8, 1\)"):
        auto.search(trained, (x[..., 0], y), objectives=["accuracy"], **common)
    with pytest.raises(ValueError, match="target='mcu'"):
        auto.search(trained, (x, y), objectives=["arena"], **common)
    with pytest.raises(ValueError, match="'f1'"):
        auto.search(trained, (x, y), objectives=["f1"], **common)
    with pytest.raises(ValueError, match="Could not read the constraint"):
        auto.search(trained, (x, y), constraints=["fast please"], **common)
    with pytest.raises(ValueError, match="criterion='taylor'"):
        auto.search(trained, (x, y), objectives=["macs"], criterion="taylor", **common)
    with pytest.raises(ValueError, match="sampler"):
        auto.search(trained, (x, y), objectives=["macs"], sampler="annealing", **common)
    with pytest.warns(UserWarning, match="No trial met the constraints"):
        result = auto.search(
            trained, (x, y), objectives=["macs"], constraints=["accuracy >= 1.01"], **common
        )
    with pytest.raises(ValueError, match=r"'accuracy >= 1.01' \(closest: 0\.\d+\)"):
        result.best()


WORKER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras, numpy as np
    from keras_prune import auto

    model_path, data_path, storage, n_trials, pause = sys.argv[1:6]
    model = keras.models.load_model(model_path)
    data = np.load(data_path)

    def evaluate(candidate):
        candidate.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
        values = candidate.evaluate(data["x"], data["y"], verbose=0, return_dict=True)
        time.sleep(float(pause))
        return values

    result = auto.search(model, (data["x"], data["y"]), objectives=["accuracy", "params"],
                         n_trials=int(n_trials), evaluate=evaluate, storage=storage,
                         study_name="shared", verbose=0)
    print("finished", len(result.candidates), flush=True)
    """
)


def _start(script, *arguments):
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, arguments)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _trials(storage, states=None):
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="shared", storage=optuna.storages.JournalStorage(JournalFileBackend(storage))
    )
    return study.get_trials(deepcopy=False, states=states)


def test_a_trial_cut_short_is_run_again(trained, digits, tmp_path):
    _, validation = digits
    storage = tmp_path / "cut.journal"
    arguments = dict(objectives=["accuracy", "macs"], samples=200, verbose=0)
    arguments.update(storage=storage, study_name="cut")
    first = auto.search(trained, validation, n_trials=2, **arguments)
    # A worker that died in the middle of a trial: its trial stays RUNNING in the journal.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name="cut", storage=_journal(storage))
    trial = study.ask()
    for name in first.space.names:
        trial.suggest_float(f"s:{name}", 0.0, 0.75, step=0.125)
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})
    resumed = auto.search(trained, validation, n_trials=3, **arguments)
    assert len(resumed.candidates) == 3
    before = {c.number: c.values for c in first.candidates}
    assert {c.number: c.values for c in resumed.candidates if c.number in before} == before
    cut = study.get_trials(deepcopy=False)[trial.number]
    assert cut.state == optuna.trial.TrialState.FAIL
    retried = [
        t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("retry_of") == cut.number
    ]
    assert len(retried) == 1 and retried[0].params == cut.params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE


def _journal(path):
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@pytest.mark.slow
def test_killed_worker_resumes_and_two_workers_share_one_study(trained, digits, tmp_path):
    _, (x, y) = digits
    model_path, data_path = tmp_path / "model.keras", tmp_path / "data.npz"
    trained.save(model_path)
    np.savez(data_path, x=x[:200], y=y[:200])
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    storage = str(tmp_path / "shared.journal")
    complete = optuna.trial.TrialState.COMPLETE

    first = _start(script, model_path, data_path, storage, 7, 1.0)
    deadline = time.time() + 240
    while time.time() < deadline:
        if os.path.exists(storage) and len(_trials(storage, (complete,))) >= 2:
            break
        assert first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {t.number: (t.values, t.params) for t in _trials(storage, (complete,))}
    interrupted = [t for t in _trials(storage, (optuna.trial.TrialState.RUNNING,))]
    assert len(before) >= 2

    workers = [_start(script, model_path, data_path, storage, 7, 0.5) for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=400)
        assert worker.returncode == 0, err[-3000:]
        assert "finished" in out
    finished = _trials(storage, (complete,))
    assert 7 <= len(finished) <= 8  # the other worker may finish the trial it was running
    after = {t.number: (t.values, t.params) for t in finished}
    assert {n: after[n] for n in before} == before  # nothing finished was lost or redone
    pids = {t.user_attrs["worker"]["pid"] for t in finished if t.number not in before}
    assert pids == {worker.pid for worker in workers}  # both processes did trials
    assert not _trials(storage, (optuna.trial.TrialState.RUNNING,))
    for trial in interrupted:  # the trial the kill cut short ran again with its sparsities
        retried = [t for t in finished if t.user_attrs.get("retry_of") == trial.number]
        assert retried and retried[0].params == trial.params


@pytest.mark.slow
def test_latency_search_remeasures_the_front(trained, digits, tmp_path):
    _, validation = digits
    table = auto.profile(trained, sparsities=(), runs=10, cache_dir=tmp_path, verbose=0)
    budget = 0.8 * table.latency_us
    common = dict(profile=table, samples=200, storage=tmp_path / "latency.journal", verbose=0)
    with pytest.raises(ValueError, match=r"'latency <= 0.001 us' cannot be met.*smallest latency"):
        auto.search(trained, validation, constraints=["latency <= 0.001 us"], n_trials=1, **common)
    result = auto.search(
        trained,
        validation,
        objectives=["accuracy", "latency"],
        constraints=[f"latency <= {budget} us"],
        n_trials=3,
        remeasure=2,
        **common,
    )
    # NSGA-II's first population is 4, but only 3 trials were asked for: nothing is left queued.
    waiting = result.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert not waiting, [t.params for t in waiting]
    measured = [c for c in result.front if c.measured]
    assert measured and all(c.measured["latency"] > 0 and c.measured["size"] > 0 for c in measured)
    assert "latency measured" in result.table()


@pytest.mark.slow
def test_arena_search_for_microcontrollers(trained, digits, tmp_path):
    _, validation = digits
    table = auto.profile(trained, "mcu", sparsities=(), cache_dir=tmp_path, verbose=0)
    common = dict(target="mcu", profile=table, samples=200, verbose=0)
    common.update(storage=tmp_path / "mcu.journal", objectives=["accuracy", "arena"])
    with pytest.raises(ValueError, match=r"smallest arena reachable is [\d.]+ (B|KB)"):
        auto.search(trained, validation, constraints=["arena <= 10 B"], n_trials=1, **common)
    result = auto.search(
        trained,
        validation,
        n_trials=3,
        remeasure=1,
        **common,
    )
    assert result.front[0].measured["arena"] > 0
    assert result.front[-1].values["arena"] < table.arena_bytes
