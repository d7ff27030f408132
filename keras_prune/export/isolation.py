"""Starts the child processes that do the exporter's native work (see `_worker.py`).

Two kinds: a fresh Python process per LiteRT / TFLM / HDF5 job (they import in a fraction of a
second), and for TensorFlow's converter a long-lived server process that imports TensorFlow
once and forks a child per conversion, since importing TensorFlow takes seconds. Either way a
segmentation fault ends a child, and the parent reads the signal from its exit status.
"""

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
import time

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
CONVERT_TIMEOUT_SECONDS = 3600
RUNTIME_TIMEOUT_SECONDS = 900
# Importing TensorFlow on a busy 2-core machine takes 6-10 s; allow for a slower one.
SERVER_START_TIMEOUT_SECONDS = 300


def worker_command(*arguments):
    """The command line that runs `_worker.py` with `arguments`.

    Through runpy with -P rather than as `python _worker.py`: a script's directory goes first on
    sys.path, and modules of this package (files.py, signature.py, ...) could then shadow
    top-level modules of the same name.
    """
    isolate = ["-P"] if sys.version_info >= (3, 11) else []
    return [
        sys.executable,
        *isolate,
        "-c",
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
        "run_name='__main__')",
        WORKER,
        *arguments,
    ]


def _child_environment():
    # The children's C++ logging goes to their captured output; keep it short.
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


def run_worker(*arguments, timeout=RUNTIME_TIMEOUT_SECONDS):
    """Runs `_worker.py arguments...` in a fresh process; returns the `CompletedProcess`
    (`returncode` < 0: ended by that signal; -9 also after a timeout)."""
    try:
        return subprocess.run(
            worker_command(*arguments),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=_child_environment(),
        )
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(
            expired.cmd, -signal.SIGKILL, expired.output or "", expired.stderr or ""
        )


def describe_exit(returncode):
    """`"signal 11 (SIGSEGV)"` for a process ended by a signal, else `"exit status N"`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-returncode} ({name})"
    return f"exit status {returncode}"


class _ConverterServer:
    """The process that imported TensorFlow and forks one child per conversion."""

    def __init__(self):
        self.process = None
        self.ready = False
        self.pending = b""
        self.lock = threading.Lock()

    def start(self):
        """Starts the server if it is not running; returns without waiting for its import."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            worker_command("serve"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_environment(),
        )
        self.ready = False
        self.pending = b""

    def _read_line(self, timeout):
        """The next line from the server, or None after `timeout` seconds or at its exit.

        Reads the pipe unbuffered: a buffered reader could hold a second line that select()
        then never reports."""
        deadline = time.monotonic() + timeout
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
                return None
            chunk = os.read(descriptor, 4096)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def _wait_ready(self):
        if self.ready:
            return
        line = self._read_line(SERVER_START_TIMEOUT_SECONDS)
        if line != "ready":
            self.stop()
            detail = line[len("failed ") :] if line else "no reply"
            raise RuntimeError(f"Could not start TensorFlow's converter in a child: {detail}")
        self.ready = True

    def run(self, job, timeout):
        """Converts the job directory in a forked child; returns its exit code (< 0: signal)."""
        with self.lock:
            for attempt in range(2):
                self.start()
                try:
                    self._wait_ready()
                    self.process.stdin.write(job.encode() + b"\n")
                    self.process.stdin.flush()
                    line = self._read_line(SERVER_START_TIMEOUT_SECONDS)
                    if not line or not line.startswith("pid "):
                        # It ended without taking the job: its idle timeout can fall while the
                        # job is written, and a process that imported TensorFlow takes seconds
                        # to exit, so it still looked alive.
                        raise RuntimeError("TensorFlow's converter server stopped answering.")
                    break
                except (BrokenPipeError, OSError, RuntimeError):
                    # The server ended (idle timeout, killed): start a fresh one once.
                    self.stop()
                    if attempt:
                        raise
            child = int(line.split()[1])
            try:
                line = self._read_line(timeout)
            except BaseException:  # Ctrl-C: the conversion must not outlive the export.
                os.kill(child, signal.SIGKILL)
                self.stop()
                raise
            if line is None:
                os.kill(child, signal.SIGKILL)
                line = self._read_line(60)
            if not line or not line.startswith("done "):
                self.stop()
                return -signal.SIGKILL
            return os.waitstatus_to_exitcode(int(line.split()[1]))

    def stop(self):
        if self.process is None:
            return
        try:
            self.process.stdin.close()
            # End of input ends the server's loop; TensorFlow's own teardown after that can take
            # many seconds and holds nothing to save, so the caller's exit does not wait for it.
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process = None
        self.ready = False


_SERVER = _ConverterServer()
atexit.register(_SERVER.stop)


def _can_fork():
    # fork() after importing TensorFlow is safe on Linux; macOS's system libraries are not
    # fork-safe, and Windows has no fork.
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def start_converter():
    """Starts the converter server now, so TensorFlow's import overlaps the caller's work."""
    if _can_fork():
        _SERVER.start()


def run_converter(job, timeout=CONVERT_TIMEOUT_SECONDS):
    """Runs the conversion job in `job` (see `_worker.convert`) in a child process; returns its
    exit code (< 0: the signal that ended it)."""
    if _can_fork():
        return _SERVER.run(job, timeout)
    return run_worker("convert", job, timeout=timeout).returncode
