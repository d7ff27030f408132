"""Output paths and temporary files: checked before any work, written all at once, no debris.

An export writes a set of files that belong together (`model.tflite`, and for MCUs
`model_data.cc`, `model_data.h`, `model_data_ops.h`). POSIX renames one path at a time, so the
set is committed through a journal in the destination folder:

1. every file, then a manifest listing them with their SHA-256, goes into a fresh staging
   folder `.keras_prune-<pid>-<token>` inside the destination;
2. the staging folder is renamed to `<same>.commit`: the commit point;
3. each file is renamed into place, files of the previous set that the new one no longer has
   are removed, and the manifest moves to `.<stem>.keras_prune.json` last.

A run killed before step 2 leaves the old set untouched and a staging folder that the next
export into that folder removes; killed after it, the next export (or `recover`) finishes the
renames from the `.commit` folder. Temporary folders in the system temp directory carry the
process id too (`keras_prune-<pid>-*`) and are removed on every exit path; those of killed
runs are removed by the next export.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time

TEMP_PREFIX = ".keras_prune-"
SYSTEM_TEMP_PREFIX = "keras_prune-"
MANIFEST = "MANIFEST.json"
COMMIT_SUFFIX = ".commit"
# Debris whose process id now belongs to another process is still removed after this long.
_STALE_SECONDS = 24 * 3600
# Temporary files of keras_prune versions that did not put the process id in the name: no
# export takes this long to write its files.
_UNOWNED_STALE_SECONDS = 600
# Test hook: a process whose environment names a stage here stops at that stage (writing
# `stage` to the file named by _PAUSE_FILE) until it is killed, so tests can SIGKILL an export
# at every write stage.
_PAUSE_AT = "KERAS_PRUNE_TEST_PAUSE_AT"
_PAUSE_FILE = "KERAS_PRUNE_TEST_PAUSE_FILE"


def _checkpoint(stage):
    if os.environ.get(_PAUSE_AT) != stage:
        return
    with open(os.environ[_PAUSE_FILE], "w", encoding="utf-8") as handle:
        handle.write(stage)
    while True:
        time.sleep(60)


@contextlib.contextmanager
def removed_if_failed(directory):
    """Removes the folders of `directory` that did not exist before the block, if the block
    fails and they hold no files: a failed export leaves no empty folders behind."""
    directory, created = os.path.abspath(directory), None
    while not os.path.exists(directory):
        created, directory = directory, os.path.dirname(directory)
    try:
        yield
    except BaseException:
        if created is not None:
            for root, _, names in sorted(os.walk(created), key=lambda entry: -len(entry[0])):
                if not names:
                    with contextlib.suppress(OSError):
                        os.rmdir(root)
        raise


def check_writable(path, *, suffix=".tflite"):
    """Raises a `ValueError` unless a file can be created at `path`; returns its absolute path.

    Args:
        path: Where the file will go. Its directory is created if missing.
        suffix: Required file name ending.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"Expected `path` to be a file path. Received: {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if (
        os.path.isdir(path)
        or not path.endswith(suffix)
        or len(os.path.basename(path)) <= len(suffix)
    ):
        raise ValueError(
            f"Expected `path` to name a file ending in {suffix!r}. Received: path={path!r}"
        )
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=_temp_name()):
            pass
    except OSError as error:
        raise ValueError(
            f"Cannot write to {directory!r} ({error.strerror}). "
            f"Choose a writable location. Received: path={path!r}"
        ) from None
    return path


def _temp_name(prefix=TEMP_PREFIX):
    return f"{prefix}{os.getpid()}-"


def _owner(name, prefix):
    """Process id in a temporary name made by `_temp_name`, or None."""
    digits = name[len(prefix) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Exists, owned by someone else.
        return True
    return True


def _stale(path, prefix):
    try:
        age = time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    pid = _owner(os.path.basename(path), prefix)
    if pid is None:  # Named by an older keras_prune, without the process id.
        return age > _UNOWNED_STALE_SECONDS
    return age > _STALE_SECONDS or not _alive(pid)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def temporary_directory():
    """A fresh folder in the system temp directory, removed however the block exits."""
    path = tempfile.mkdtemp(prefix=_temp_name(SYSTEM_TEMP_PREFIX))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_system_temp():
    """Removes temporary folders that killed keras_prune runs left in the system temp
    directory; returns their paths."""
    root = tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if name.startswith(SYSTEM_TEMP_PREFIX) and _stale(path, SYSTEM_TEMP_PREFIX):
                _remove(path)
                removed.append(path)
    return removed


def manifest_path(directory, stem):
    """Where the manifest of the file set named `stem` lives in `directory`."""
    return os.path.join(directory, f".{stem}.keras_prune.json")


def _digest(content):
    return hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()


def _file_digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _fsync_directory(directory):
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _roll_forward(commit, directory):
    """Finishes a committed set: renames its files into place, removes the previous set's
    files it does not replace, then moves its manifest into place and removes the folder."""
    with open(os.path.join(commit, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    for name in manifest["files"]:
        source = os.path.join(commit, name)
        if os.path.exists(source):
            os.replace(source, os.path.join(directory, name))
            _checkpoint(f"swap:{name}")
    for name, digest in manifest.get("replaced", {}).items():
        path = os.path.join(directory, name)
        if name not in manifest["files"] and os.path.isfile(path) and _file_digest(path) == digest:
            os.remove(path)
    _checkpoint("manifest")
    os.replace(os.path.join(commit, MANIFEST), manifest_path(directory, manifest["stem"]))
    _fsync_directory(directory)
    _checkpoint("cleanup")
    shutil.rmtree(commit, ignore_errors=True)


def recover(directory):
    """Cleans `directory` after killed exports: finishes committed sets (`.commit` folders)
    and removes staging folders and temporary files whose process is gone.

    Returns:
        `{"completed": [...], "removed": [...]}`: the paths acted on.

    Example:

    ```python
    kp.export.recover("build/")
    # {"completed": [], "removed": [".../build/.keras_prune-4242-ab12cd"]}
    ```
    """
    done = {"completed": [], "removed": []}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return done
    for name in names:
        path = os.path.join(directory, name)
        if not name.startswith(TEMP_PREFIX) or not _stale(path, TEMP_PREFIX):
            continue
        if name.endswith(COMMIT_SUFFIX) and os.path.isfile(os.path.join(path, MANIFEST)):
            _roll_forward(path, directory)
            done["completed"].append(path)
        else:
            _remove(path)
            done["removed"].append(path)
    return done


def _write(path, content):
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())


def commit_files(directory, stem, files):
    """Writes `{file name: str | bytes}` into `directory` as one set named `stem`: afterwards
    `directory` holds either the complete previous set or the complete new one (see the module
    docstring), and no temporary files.

    Files of the previous set of that name that the new set lacks (e.g. C sources when a
    model exported for `mcu` is exported for `mobile`) are removed if unchanged since.

    Returns:
        The absolute paths written.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    recover(directory)
    previous = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(manifest_path(directory, stem), encoding="utf-8") as handle:
            previous = json.load(handle)["files"]
    staging = tempfile.mkdtemp(dir=directory, prefix=_temp_name())
    committed = False
    try:
        umask = os.umask(0)
        os.umask(umask)
        for name, content in files.items():
            path = os.path.join(staging, name)
            _write(path, content)
            os.chmod(path, 0o666 & ~umask)
            _checkpoint(f"staging:{name}")
        manifest = {
            "stem": stem,
            "files": {name: _digest(content) for name, content in files.items()},
            "replaced": previous,
        }
        _write(os.path.join(staging, MANIFEST), json.dumps(manifest, indent=1))
        _checkpoint("staged")
        commit = staging + COMMIT_SUFFIX
        os.rename(staging, commit)
        committed = True
        _fsync_directory(directory)
        _checkpoint("committed")
        _roll_forward(commit, directory)
    finally:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
    return [os.path.join(directory, name) for name in files]
