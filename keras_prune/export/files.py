"""Output paths: checked before any work is done, written all at once or not at all."""

import os
import tempfile


def check_writable(path, *, suffix=".tflite"):
    """Raises a `ValueError` unless a file can be created at `path`; returns its absolute path.

    Args:
        path: Where the file will go. Its directory is created if missing.
        suffix: Required file name ending.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"Expected `path` to be a file path. Received: {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path) or not path.endswith(suffix):
        raise ValueError(
            f"Expected `path` to name a file ending in {suffix!r}. Received: path={path!r}"
        )
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ValueError(
            f"Cannot write to {directory!r} ({error.strerror}). "
            f"Choose a writable location. Received: path={path!r}"
        ) from None
    return path


def write_atomically(files):
    """Writes `{path: str | bytes}` so that either every file appears or none does.

    Each file goes to a temporary name in its destination directory first; only when all are
    written are they renamed into place (a rename within one file system is atomic).
    """
    staged = []
    try:
        for path, content in files.items():
            directory = os.path.dirname(os.path.abspath(path))
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".keras_prune-")
            staged.append((temporary, path))
            mode = "wb" if isinstance(content, bytes) else "w"
            with os.fdopen(handle, mode) as stream:
                stream.write(content)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
