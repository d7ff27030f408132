"""`load_model`: a `.keras` file checked before Keras reads it, so a bad file gets a clear error.

Keras reads the HDF5 weights inside the archive with random access, so a corrupted member is
never CRC-checked and reaches the HDF5 library, which can end the process on a bad file. Here
the archive's CRCs are checked first (a bit flip, truncation or overwrite of a stored member
shows up there), then a child process reads every weight array, and only then does Keras load
the model. Every failure raises `InvalidModelFileError`.
"""

import os
import zipfile

from keras_prune.export import isolation
from keras_prune.export.errors import InvalidModelFileError

_ZIP_MAGIC = b"PK\x03\x04"
_TFLITE_IDENTIFIER = b"TFL3"


def _invalid(path, reason):
    return InvalidModelFileError(
        f"{path!r} is not a valid .keras file ({reason}). Save the model again with "
        "`model.save('model.keras')`.",
        path,
    )


def check_keras_file(path):
    """Raises `InvalidModelFileError` unless `path` is an intact `.keras` archive whose weights
    HDF5 can read (read in a child process); `FileNotFoundError` if it does not exist."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Expected a path to an existing .keras file. Received: {path!r}")
    if os.path.isdir(path):
        raise InvalidModelFileError(
            f"Expected a .keras file. Received: {path!r}, which is a directory.", path
        )
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise _invalid(path, "the file is empty")
    if head[4:8] == _TFLITE_IDENTIFIER:
        raise InvalidModelFileError(
            f"{path!r} is a .tflite file, not a .keras model: it is already exported. Inspect "
            f"it with `keras-prune inspect {path}`.",
            path,
        )
    if head[:4] != _ZIP_MAGIC:
        raise _invalid(path, "not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise _invalid(path, f"damaged zip archive: {error}") from None
    except Exception as error:  # zlib.error, NotImplementedError: any unreadable member.
        raise _invalid(path, f"damaged zip archive: {type(error).__name__}: {error}") from None
    if damaged is not None:
        raise _invalid(path, f"member {damaged!r} fails its CRC check: the file is corrupted")
    if "config.json" not in names:
        raise _invalid(path, "no config.json in the archive")
    if any(name.endswith(".h5") for name in names):
        run = isolation.run_worker("keras-weights", path, timeout=600)
        if run.returncode < 0:
            raise _invalid(
                path,
                f"reading its weights crashed the HDF5 library "
                f"({isolation.describe_exit(run.returncode)}); your process was not affected",
            )
        if run.returncode != 0:
            lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
            raise _invalid(path, "unreadable weights: " + (lines[-1] if lines else "no message"))


def load_model(path, *, custom_objects=None):
    """Loads a `.keras` file after checking it, with an `InvalidModelFileError` naming what is
    wrong when it cannot be loaded.

    keras_prune's own layers are registered first, so models saved with pruning wrappers load.

    Args:
        path: A `.keras` file.
        custom_objects: Passed to `keras.saving.load_model` for the model's own classes.

    Example:

    ```python
    pruned.save("pruned.keras")
    model = kp.export.load_model("pruned.keras")
    ```
    """
    import keras

    check_keras_file(path)
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects)
    except Exception as error:  # Keras raises whatever its deserializers raise.
        text = str(error).strip()
        message = f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"
        if "Could not locate" in text or "Unknown" in text:
            raise InvalidModelFileError(
                f"Cannot load {path!r}: it uses a class Keras does not know ({message}). Import "
                "the module that defines it, or pass `custom_objects`.",
                os.fspath(path),
            ) from None
        raise _invalid(os.fspath(path), f"Keras cannot load it: {message}") from None
