"""Where a search's trials are stored, so that a killed search resumes and several processes
(or machines) share one study.

`storage=None` keeps the study in Optuna's journal file `keras_prune_search.journal` in the
working directory (next to the user's files); a path ending in `.journal` or `.log` is such a
file elsewhere, a path ending in `.db` / `.sqlite` an SQLite database, a URL
(`postgresql://...`, `mysql://...`, `sqlite:///...`) Optuna's RDB storage for many machines,
and an Optuna storage object is used as it is.

A process killed in the middle of a trial leaves it RUNNING. When a search starts, RUNNING
trials of workers on this machine whose process has ended are marked failed and their
sparsities queued again, so nothing finished is repeated and nothing unfinished is lost. (RDB
storages also use Optuna's heartbeat, which does the same across machines.)
"""

import os
import socket

DEFAULT_JOURNAL = "keras_prune_search.journal"
_HEARTBEAT_SECONDS = 60


def optuna_module():
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            "kp.auto.search runs its studies with Optuna, an optional dependency: "
            "`pip install keras-prune[auto]` (or `pip install optuna`)."
        ) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(storage):
    """`(Optuna storage, description)` for the `storage` argument of `kp.auto.search`.

    Example:

    ```python
    open_storage("studies/digits.journal")
    ```
    """
    optuna = optuna_module()
    if storage is None:
        storage = os.path.join(os.getcwd(), DEFAULT_JOURNAL)
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage, type(storage).__name__
    if not isinstance(storage, (str, os.PathLike)):
        raise ValueError(
            "Expected `storage` to be None (a journal file in the working directory), a "
            "journal file path (*.journal), an SQLite file (*.db), a database URL or an Optuna "
            f"storage. Received: storage={storage!r}"
        )
    storage = os.fspath(storage)
    if "://" in storage:
        return (
            optuna.storages.RDBStorage(
                storage,
                heartbeat_interval=_HEARTBEAT_SECONDS,
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3),
            ),
            storage,
        )
    path = os.path.abspath(storage)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith((".db", ".sqlite", ".sqlite3")):
        return optuna.storages.RDBStorage(f"sqlite:///{path}"), path
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(path)), path


def worker_identity():
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_abandoned(study):
    """Marks failed the RUNNING trials whose worker process on this machine has ended, and
    queues their sparsities again. Returns the numbers of the recovered trials."""
    optuna = optuna_module()
    running = optuna.trial.TrialState.RUNNING
    here = socket.gethostname()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        worker = trial.user_attrs.get("worker")
        if not worker or worker.get("host") != here or _alive(worker.get("pid", -1)):
            continue
        # FrozenTrial has no public id; Optuna's own stale-trial code uses this attribute.
        changed = study._storage.set_trial_state_values(
            trial._trial_id, optuna.trial.TrialState.FAIL
        )
        if changed and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            recovered.append(trial.number)
    return recovered


def other_workers_running(study):
    """Whether trials of other live processes are running in `study`."""
    optuna = optuna_module()
    me = worker_identity()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") != me:
            return True
    return False
