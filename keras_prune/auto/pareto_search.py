"""`search`: per-group (or per-layer) sparsities searched with Optuna for the best models under
deployment budgets, returned as a Pareto front.

Each trial draws one sparsity per variable (`keras_prune.auto.space`), predicts the costs of
the choice without building it (MACs and parameters counted, latency / file bytes / arena read
from the `kp.auto.profile` lookup table), builds the pruned model, fine-tunes it briefly (or
runs the user's `evaluate` proxy) and measures the compiled metrics. NSGA-II searches several
objectives at once; TPE or a Gaussian process one objective. Constraints steer every sampler
(`Trial.set_constraint`). At the end the front's points are exported and re-measured end
to end on the runtime.

The study lives in a store (`keras_prune.auto.study`): a killed search resumes where it
stopped, and several processes started with the same `storage` and arguments share the work.
"""

import os
import time
import warnings

import keras
import numpy as np

from keras_prune.auto import cache as cache_lib
from keras_prune.auto import constraints as constraints_lib
from keras_prune.auto import data as data_lib
from keras_prune.auto import latency_profile as profile_lib
from keras_prune.auto import objectives as objectives_lib
from keras_prune.auto import selection
from keras_prune.auto import starting_points as starting_lib
from keras_prune.auto import study as study_lib
from keras_prune.auto.search_result import Candidate, SearchResult
from keras_prune.auto.space import SearchSpace
from keras_prune.core import criteria as criteria_lib
from keras_prune.core import validation

SAMPLERS = ("nsga2", "tpe", "gp", "random")
DEFAULTS = {"channel": (0.75, 0.125), "unstructured": (0.95, 0.05)}
_NEEDS_PROFILE = {"latency", "arena"}
_FILE_COSTS = ("latency", "size", "arena")


def _metric_key(name, values):
    """The key of `values` (evaluate's dict) an objective called `name` reads."""
    if name in values:
        return name
    if name == "accuracy":
        for key in values:
            if "acc" in key:
                return key
    return None


class _Evaluator:
    """Fine-tunes (optionally) and evaluates candidate models, or runs the user's proxy."""

    def __init__(self, model, validation, fine_tune_data, epochs, batch_size, evaluate):
        self.compile_config = (
            model.get_compile_config() if getattr(model, "compiled", False) else None
        )
        self.x, self.y = validation
        self.fine_tune_data, self.epochs, self.batch_size = fine_tune_data, epochs, batch_size
        self.function = evaluate
        if evaluate is None and self.compile_config is None:
            raise ValueError(
                f"Expected a compiled model (its loss and metrics score the candidates) or an "
                f"`evaluate` function. Model {model.name!r} is not compiled: call "
                "`model.compile(optimizer, loss, metrics=['accuracy'])` first."
            )

    def __call__(self, model, fine_tune=True):
        if self.function is not None:
            values = self.function(model)
            if isinstance(values, dict):
                return {key: float(value) for key, value in values.items()}
            return {"score": float(values)}
        model.compile_from_config(self.compile_config)
        if fine_tune and self.fine_tune_data is not None and self.epochs:
            x, y = self.fine_tune_data
            model.fit(x, y, epochs=self.epochs, batch_size=self.batch_size, verbose=0)
        values = model.evaluate(
            self.x, self.y, batch_size=max(self.batch_size, 256), verbose=0, return_dict=True
        )
        return {key: float(value) for key, value in values.items()}


def _sampler_name(sampler, objective_count):
    return sampler or ("tpe" if objective_count == 1 else "nsga2")


def _first_generation(sampler, objective_count, n_trials):
    """How many trials the sampler draws before it learns from results: NSGA-II's first
    population, TPE's startup trials (0 for the others, or an Optuna sampler passed in)."""
    name = _sampler_name(sampler, objective_count)
    if name == "nsga2":
        return int(min(50, max(4, n_trials // 4)))
    if name == "tpe":
        return min(10, max(2, n_trials // 3))
    return 0


def _join_generation(trial):
    """Count `trial` in the current generation of a genetic sampler (NSGA-II).

    Optuna gives a trial its generation when the sampler first draws a parameter for it. A
    queued trial (a starting point) has every parameter fixed, so it never draws and belongs
    to no generation: its results would never be parents, and the first population would be
    random points drawn after it (measured with Optuna 5.1: children of queued trials at 50-75%
    sparsity came out at random, 25-50%). Asking the sampler for the generation assigns it."""
    import optuna

    study = trial.study
    if isinstance(study.sampler, optuna.samplers.BaseGASampler):
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        study.sampler.get_trial_generation(study, frozen)


def _choose_sampler(optuna, sampler, objectives, seed, n_trials):
    name = _sampler_name(sampler, len(objectives))
    if not isinstance(name, str):
        return sampler
    validation.check_choice("sampler", name, set(SAMPLERS))
    first = _first_generation(name, len(objectives), n_trials)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=first, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=first)
    if name == "gp":
        if len(objectives) != 1:
            raise ValueError(
                f"sampler='gp' optimizes one objective. Received: {len(objectives)} "
                "objectives; use sampler='nsga2' (or 'tpe') for several."
            )
        try:
            import torch  # noqa: F401 -- Optuna's GPSampler runs on PyTorch
        except ImportError as error:
            raise ImportError(
                "sampler='gp' needs PyTorch (Optuna's Gaussian-process sampler runs on it): "
                "`pip install torch`, or use sampler='tpe'."
            ) from error
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def search(
    model,
    validation_data,
    *,
    objectives=("accuracy", "latency"),
    constraints=(),
    granularity="channel",
    criterion="magnitude",
    n_trials=40,
    fine_tune_data=None,
    fine_tune_epochs=1,
    batch_size=32,
    evaluate=None,
    samples=1024,
    target="mobile",
    threads=1,
    profile=None,
    max_sparsity=None,
    step=None,
    filters=None,
    sampler=None,
    seed=0,
    weights=None,
    storage=None,
    study_name=None,
    remeasure=8,
    initial="uniform",
    cache_dir=None,
    verbose=1,
):
    """Search per-group (or per-layer) sparsities for the best models under budgets.

    Args:
        model: a built, compiled Sequential or Functional model (trained); never changed.
        validation_data: `(x, y)` arrays or a dataset of `(x, y)` batches on which every
            candidate's compiled metrics are measured (at most `samples` examples of it).
        objectives: what to optimize: "accuracy" (or any compiled metric's name), "loss",
            "latency" (LiteRT, from the `profile` table), "size" (file bytes), "arena" (TFLM,
            `target="mcu"`), "macs", "params". At least one.
        constraints: budgets as text: "latency <= 20 ms", "arena <= 64 KB", "size <= 1 MB",
            "macs <= 5M", "accuracy >= 0.9".
        granularity: "channel" (one sparsity, the share of channels removed, per group; the
            model is shrunk) or "unstructured" (one sparsity per layer).
        criterion: how the weights (or channels) a candidate prunes are ranked: a
            `kp.criteria` name or instance that needs no gradients ("magnitude", the default,
            "l2", "bn_scale" for channels, ...).
        n_trials: finished trials the study should hold (resumed studies count theirs).
        fine_tune_data: `(x, y)` training arrays for the short fine-tune of every candidate
            (None: candidates are evaluated one-shot).
        fine_tune_epochs: epochs of that fine-tune.
        batch_size: its batch size.
        evaluate: instead of the fine-tune and evaluation: a callable `model -> dict of
            metric values` (or a number, named "score") used as a proxy.
        samples: at most this many validation examples are evaluated.
        target: "mobile", "mobile-int8" or "mcu": the runtime costs are measured on.
        threads: LiteRT thread count for latency.
        profile: a `kp.auto.profile(model, target)` result to reuse (else one is made when
            latency or arena is an objective or a constraint).
        max_sparsity: the largest sparsity a variable may take (default 0.75 for channels,
            0.95 unstructured).
        step: the spacing of the values each variable takes (default 0.125 / 0.05).
        filters: which layers may be pruned (see `kp.prune`).
        sampler: "nsga2" (default with several objectives), "tpe" (default with one), "gp"
            (one objective, needs PyTorch), "random", or an Optuna sampler.
        seed: the sampler's seed (processes joining a running study add their pid).
        weights: `{objective: weight}` preferences that pick `result.best()` on the front.
        storage: where the study is kept (see `keras_prune.auto.study`): None (journal file
            `keras_prune_search.journal` in the working directory), a `.journal` or `.db`
            path, a database URL, or an Optuna storage.
        study_name: default: the model's name and a hash of the search's arguments, so the
            same call resumes the same study.
        remeasure: export and time end to end at most this many front points at the end (0:
            none).
        initial: the first trials, queued when the study is new: "uniform" (every variable
            at 25%, then 50%; with cost constraints, each pruned further until it meets them,
            plus random points moved into them to fill the sampler's first generation),
            "sensitivity" (those, plus for each one a point as cheap by the first cost
            objective, e.g. the table's latency, whose channels are removed where a one-shot
            channel sensitivity scan of the compiled loss on the validation sample says they
            cost least; the scan is cached like `kp.auto.sensitivity`'s; channel granularity
            and a compiled model), or a list of `{variable name: sparsity}` dicts
            (names from `SearchSpace.names`, values on the grid; missing variables 0).
        cache_dir: the latency-table (and sensitivity-scan) cache (see `kp.auto.profile`).
        verbose: 1 shows a progress bar (trials, best so far, time left).

    Returns:
        A `SearchResult`: `.front`, `.table()`, `.plot(path)`, `.best()`, `.materialize(point)`.

    Example:

    ```python
    # docs: slow (latency measured on LiteRT, an Optuna study, fine-tuning)
    result = kp.auto.search(model, (x, y), objectives=["accuracy", "latency"],
                            constraints=["latency <= 2 ms"], fine_tune_data=(x, y),
                            n_trials=30)
    print(result.table())
    small = result.best().materialize()
    ```
    """
    optuna = study_lib.optuna_module()
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: model={model!r}")
    if isinstance(objectives, str):
        objectives = [objectives]
    objectives = [objectives_lib.get(name) for name in objectives]
    if not objectives:
        raise ValueError(
            "Expected at least one objective in `objectives`, e.g. objectives=['accuracy', "
            "'latency']. Received: an empty list."
        )
    if len({o.name for o in objectives}) != len(objectives):
        raise ValueError(f"Expected distinct objectives. Received: {[o.name for o in objectives]}")
    if isinstance(constraints, str):
        constraints = [constraints]
    constraints = [constraints_lib.parse(text) for text in constraints]
    validation.check_choice("granularity", granularity, set(DEFAULTS))
    chosen_criterion = criteria_lib.get(criterion)
    if chosen_criterion.needs_gradients:
        raise ValueError(
            "Expected a `criterion` that needs no gradients (e.g. 'magnitude'): candidates are "
            f"pruned without calibration data. Received: criterion={criterion!r}"
        )
    n_trials = validation.check_int("n_trials", n_trials, minimum=1)
    fine_tune_epochs = validation.check_int("fine_tune_epochs", fine_tune_epochs, minimum=0)
    batch_size = validation.check_int("batch_size", batch_size, minimum=1)
    remeasure = validation.check_int("remeasure", remeasure, minimum=0)
    threads = validation.check_int("threads", threads, minimum=1)
    initial = starting_lib.check_initial(initial)
    if initial == "sensitivity" and granularity != "channel":
        raise ValueError(
            "initial='sensitivity' budgets channel groups: use granularity='channel', or "
            "initial='uniform' (or a list of {layer name: sparsity} dicts) for unstructured."
        )
    default_max, default_step = DEFAULTS[granularity]
    max_sparsity = validation.check_sparsity(
        "max_sparsity", default_max if max_sparsity is None else max_sparsity
    )
    step = validation.check_real(
        "step", default_step if step is None else step, low=0, high=1, low_open=True
    )
    from keras_prune.export.targets import get_target

    target = get_target(target).name
    names = {o.name for o in objectives} | {c.name for c in constraints}
    if "arena" in names and target != "mcu":
        raise ValueError(
            "The `arena` objective or constraint is TensorFlow Lite Micro's memory: pass "
            f"target='mcu'. Received: target={target!r}"
        )
    if "latency" in names and target == "mcu":
        raise ValueError(
            "Latency is timed on LiteRT: use target='mobile' or 'mobile-int8' for a latency "
            "objective or constraint (target='mcu' measures bytes and arena)."
        )
    x, y = data_lib.evaluation_arrays(model, validation_data, samples=samples)
    if fine_tune_data is not None:
        fine_tune_data = data_lib.evaluation_arrays(model, fine_tune_data, name="fine_tune_data")
    evaluator = _Evaluator(model, (x, y), fine_tune_data, fine_tune_epochs, batch_size, evaluate)
    if initial == "sensitivity" and evaluator.compile_config is None:
        raise ValueError(
            "initial='sensitivity' scans the compiled loss: compile the model "
            f"({model.name!r} is not), or pass initial='uniform'."
        )
    notes = []
    if granularity == "unstructured" and "latency" in names:
        notes.append(
            "unstructured sparsity leaves LiteRT's dense kernels as fast as before (XNNPACK's "
            "sparse path is off on x86): latency does not change; search channels for speed"
        )
        warnings.warn(notes[-1], stacklevel=2)

    working = selection.working_copy(model)
    if profile is None and names & _NEEDS_PROFILE:
        profile = profile_lib.profile(
            working,
            target,
            threads=threads,
            sparsities=(0.5,),
            cache_dir=cache_dir,
            verbose=verbose,
        )
    if profile is not None and profile.target != target:
        raise ValueError(
            f"Expected a `profile` measured for target={target!r}. Received a profile for "
            f"{profile.target!r}."
        )
    space = SearchSpace(
        working, granularity, filters, max_sparsity, step, profile, target, chosen_criterion
    )
    if not isinstance(initial, str):
        initial = starting_lib.check_points(initial, space.names, space.values())

    full = space.costs({})
    smallest = space.smallest()
    for constraint in constraints:
        objective = constraint.objective
        if not objective.is_cost:
            continue
        reachable = smallest[constraint.name]
        if reachable is not None and not constraint.met(reachable):
            raise ValueError(
                f"The constraint {constraint.text!r} cannot be met: the smallest {constraint.name} "
                f"reachable is {constraint.format(reachable)} (every "
                f"{'channel group' if granularity == 'channel' else 'layer'} at "
                f"max_sparsity={max_sparsity}; unpruned: "
                f"{constraint.format(full[constraint.name])}). "
                f"Relax it to at least {constraint.format(reachable)}, or raise `max_sparsity`."
            )

    baseline_metrics = evaluator(selection.working_copy(model), fine_tune=False)
    for objective in objectives + [c.objective for c in constraints]:
        if not objective.is_cost and _metric_key(objective.name, baseline_metrics) is None:
            raise ValueError(
                f"Expected objective {objective.name!r} among the values the evaluation "
                f"returns: {sorted(baseline_metrics)}. Compile the model with that metric, or "
                "name one of these."
            )
    baseline = dict(full)
    baseline.update(
        {
            o.name: baseline_metrics[_metric_key(o.name, baseline_metrics)]
            for o in objectives
            if not o.is_cost
        }
    )

    def value_of(name, costs, metrics):
        objective = objectives_lib.get(name)
        if objective.is_cost:
            return costs[name]
        return metrics[_metric_key(name, metrics)]

    def objective_function(trial):
        trial.set_user_attr("worker", study_lib.worker_identity())
        _join_generation(trial)
        sparsities = space.suggest(trial)
        costs = space.costs(sparsities)
        violations = [
            c.violation(costs[c.name]) / max(abs(c.value), 1e-12)
            for c in constraints
            if c.objective.is_cost
        ]
        # A choice over a cost budget is not fine-tuned: it cannot be on the feasible front.
        feasible_costs = all(v <= 0 for v in violations)
        candidate_model = space.materialize(model, sparsities)
        metrics = evaluator(candidate_model, fine_tune=feasible_costs)
        violations = [
            c.violation(value_of(c.name, costs, metrics)) / max(abs(c.value), 1e-12)
            for c in constraints
        ]
        trial.set_user_attr("costs", {k: v for k, v in costs.items() if v is not None})
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("violations", violations)
        for constraint, violation in zip(constraints, violations, strict=True):
            trial.set_constraint(constraint.text, violation)
        trial.set_user_attr("fine_tuned", bool(feasible_costs and fine_tune_data is not None))
        values = [value_of(o.name, costs, metrics) for o in objectives]
        return values[0] if len(values) == 1 else values

    storage_object, storage_description = study_lib.open_storage(storage)
    if study_name is None:
        digest = cache_lib.key(
            cache_lib.model_digest(model),
            [o.name for o in objectives],
            [c.text for c in constraints],
            granularity,
            repr(chosen_criterion),
            max_sparsity,
            step,
            str(filters),
            target,
            threads,
            fine_tune_epochs,
            data_lib.digest_arrays(x, y),
            *([] if isinstance(initial, str) and initial == "uniform" else [initial]),
        )
        study_name = f"{model.name}-{granularity}-{digest[:10]}"
    directions = [o.direction for o in objectives]
    study = optuna.create_study(
        storage=storage_object,
        study_name=study_name,
        directions=directions,
        load_if_exists=True,
    )
    if list(study.directions) != [
        getattr(optuna.study.StudyDirection, d.upper()) for d in directions
    ]:
        raise ValueError(
            f"The study {study_name!r} in {storage_description} was made for other objectives. "
            "Pass another `study_name` or `storage`."
        )
    recovered = study_lib.recover_abandoned(study)
    if recovered and verbose:
        print(f"Resuming study {study_name!r}: trials {recovered} were interrupted, queued again.")
    # A worker joining or resuming a study draws from its own stream, so that two processes
    # do not propose the same sparsities.
    joined = bool(study.trials) or study_lib.other_workers_running(study)
    sampler_seed = seed + os.getpid() if joined and seed is not None else seed
    study.sampler = _choose_sampler(
        optuna,
        sampler,
        objectives,
        sampler_seed,
        n_trials,
    )
    complete = optuna.trial.TrialState.COMPLETE
    if not study.trials:
        scan = None
        if initial == "sensitivity" and len(space.values()) > 1:
            scan = _channel_scan(model, (x, y), space, criterion, filters, cache_dir, verbose)
        cost_name = next((o.name for o in objectives if o.is_cost), None) or next(
            (c.name for c in constraints if c.objective.is_cost), "macs"
        )
        if cost_name == "latency" and space.profile is None:
            cost_name = "macs"
        budgets = [c for c in constraints if c.objective.is_cost]
        points = starting_lib.starting_points(
            initial,
            space,
            cost_name,
            scan,
            meets=starting_lib.meets_budgets(budgets, space) if budgets else None,
            # No more than this call runs: extra queued points would wait in the study.
            fill=min(_first_generation(sampler, len(objectives), n_trials), n_trials),
            seed=seed,
        )
        for point in points:
            study.enqueue_trial({f"s:{k}": v for k, v in point.items()})
    done = len(study.get_trials(deepcopy=False, states=(complete,)))
    remaining = n_trials - done
    if remaining > 0:
        progress = _Progress(study, objectives, n_trials, done, weights) if verbose else None
        callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=(complete,))]
        if progress is not None:
            callbacks.append(progress)
        study.optimize(objective_function, n_trials=remaining, callbacks=callbacks)
    candidates = _candidates(study, space, objectives, optuna)
    result = SearchResult(
        model, space, objectives, constraints, candidates, baseline, study,
        storage_description, weights, notes,
    )  # fmt: skip
    if not result.front and candidates:
        warnings.warn(result.infeasible_message(), stacklevel=2)
    if remeasure and names & set(_FILE_COSTS):
        _remeasure(result, result.front[:remeasure], target, threads, x)
    return result


def _channel_scan(model, data, space, criterion, filters, cache_dir, verbose):
    """A one-shot channel sensitivity scan of `model`'s compiled loss at the search's grid."""
    from keras_prune.auto.sensitivity_analysis import sensitivity

    x, y = data
    return sensitivity(
        model,
        (x, y),
        granularity="channel",
        sparsities=space.values()[1:],
        criterion=criterion,
        filters=filters,
        samples=len(keras.tree.flatten(x)[0]),
        cache_dir=cache_dir,
        verbose=verbose,
    )


def _candidates(study, space, objectives, optuna):
    found = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        values = trial.values
        found.append(
            Candidate(
                number=trial.number,
                sparsities={name: trial.params.get(f"s:{name}", 0.0) for name in space.names},
                values={o.name: v for o, v in zip(objectives, values, strict=True)},
                costs=dict(trial.user_attrs.get("costs", {})),
                metrics=dict(trial.user_attrs.get("metrics", {})),
                violations=list(trial.user_attrs.get("violations", [])),
            )
        )
    return found


def _remeasure(result, candidates, target, threads, x):
    """Exports `candidates` and measures latency, file bytes (and TFLM arena) end to end."""
    from keras_prune.export import verify as verify_lib
    from keras_prune.export.targets import get_target
    from keras_prune.pruning import strip

    chosen = get_target(target)
    calibration = None
    if chosen.quantize:
        calibration = keras.tree.map_structure(lambda a: np.asarray(a)[:100], x)
    files = []
    for candidate in candidates:
        model = candidate.materialize()
        if result.space.granularity == "unstructured":
            model = strip(model)
        from keras_prune.export import convert as convert_lib

        files.append(convert_lib.convert(model, chosen, calibration))
    latencies = [None] * len(files)
    if chosen.runtime == "litert" and files:
        clock = result.space.profile.clock if result.space.profile is not None else "wall"
        if threads != 1:  # one thread's CPU time is the latency only when it runs alone
            clock = "wall"
        latencies = verify_lib.measure_latencies(
            files, threads=threads, runs=30, rounds=3, clock=clock
        )
    for candidate, data, latency in zip(candidates, files, latencies, strict=True):
        candidate.measured = {"latency": latency, "size": len(data)}
        if chosen.runtime == "tflm":
            candidate.measured["arena"] = verify_lib.find_min_arena(data)


class _Progress:
    """An Optuna callback driving a `keras.utils.Progbar`: trials done, best so far, ETA."""

    def __init__(self, study, objectives, n_trials, done, weights):
        self.objectives = objectives
        self.weights = weights
        names = [o.name for o in objectives]
        self.bar = keras.utils.Progbar(n_trials, stateful_metrics=names)
        self.bar.update(done)
        self.start = time.perf_counter()

    def __call__(self, study, trial):
        from keras_prune.auto.search_result import pareto_front

        optuna = study_lib.optuna_module()
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        feasible = [t for t in complete if all(v <= 0 for v in t.user_attrs.get("violations", []))]
        shown = []
        if feasible:
            candidates = [
                Candidate(
                    t.number,
                    {},
                    dict(zip([o.name for o in self.objectives], t.values, strict=True)),
                    {},
                    {},
                    [],
                )  # fmt: skip
                for t in feasible
            ]
            front = pareto_front(candidates, self.objectives)
            first = self.objectives[0]
            best = max(front, key=lambda c: c.values[first.name] * (1 if first.maximize else -1))
            shown = [(o.name, best.values[o.name]) for o in self.objectives]
        self.bar.update(min(len(complete), self.bar.target), values=shown)
