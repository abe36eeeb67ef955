"""Risky work in a worker process: whatever one image makes the reader do, the caller (the app's server, serving
every user) survives it.

A :class:`Worker` is one long-lived child process, started with the ``spawn`` method (no copy of the server's threads
or locks), that runs module-level functions sent to it one at a time and keeps what they cache (the models) between
calls. During a call its address space may grow by at most MEMORY_ALLOWANCE_BYTES (``RLIMIT_AS``, set when the call
starts and lifted when it ends, so that imports and model loading outside calls are not squeezed: OpenBLAS, for one,
hangs instead of failing when it starts under a tight limit); an allocation past that fails at once with MemoryError
instead of pushing the machine into the kernel's OOM killer. A call that runs out of memory, outlives its timeout,
or kills the worker raises :class:`WorkerError` with one sentence; a dead or stopped worker is replaced on the next
call.

:func:`analyze_with_weights` is the Classify page's analysis as such a function: the models chosen on the Home page,
loaded once per worker.
"""

from __future__ import annotations

import multiprocessing
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ecgcore.errors import UserError
from ecgcore.read import models
from ecgcore.read.models import Weights

MEMORY_ALLOWANCE_BYTES = 4 * 2**30  # what one call may add to the warmed-up worker's address space
CALL_TIMEOUT_S = 180.0  # a call running longer is stopped (the reader's own budget, ecgcore.read.budget, is far less)
START_TIMEOUT_S = 300.0  # starting and warming up a worker (imports and models; slow on a busy machine)
POLL_S = 0.2
# How torch ("DefaultCPUAllocator: can't allocate memory") and OpenCV ("Insufficient memory") report a failed allocation.
OUT_OF_MEMORY_PHRASES = ("can't allocate memory", "insufficient memory", "failed to allocate", "out of memory")
MEMORY_SENTENCE = ("reading this image needed more memory than allowed ({gb:.0f} GB more than the models); it is "
                   "probably not an ECG printout.")


class WorkerError(RuntimeError):
    """A call could not finish in the worker (memory, time, or the worker died); the message is one sentence."""


# --- address-space limit ----------------------------------------------------------------------------------------


def address_space_bytes() -> int:
    """This process's current virtual size (what RLIMIT_AS counts)."""
    import psutil

    return int(psutil.Process().memory_info().vms)


@contextmanager
def memory_allowance(allowance_bytes: int = MEMORY_ALLOWANCE_BYTES) -> Iterator[int]:
    """Within the block, this process's address space may grow by at most ``allowance_bytes`` beyond its size at
    the start (RLIMIT_AS; the soft limit only, never above the hard one, and restored afterwards). What is already
    mapped (libraries, models) does not count; past the allowance, allocations raise MemoryError. Yields the limit.
    Import what the block needs before it: some libraries hang rather than fail when they start under a limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space_bytes() + int(allowance_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or the way torch and OpenCV say that an allocation failed."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, UserError):  # the project's own sentences (DigitizationError, ...) are never about this
        return False
    text = str(exc).lower()
    return any(phrase in text for phrase in OUT_OF_MEMORY_PHRASES)


def memory_sentence(allowance_bytes: int = MEMORY_ALLOWANCE_BYTES) -> str:
    return MEMORY_SENTENCE.format(gb=allowance_bytes / 2**30)


# --- the worker process -------------------------------------------------------------------------------------------


def _worker_main(conn, allowance_bytes: int, warmup: Callable[[], Any] | None) -> None:
    """The child's loop: warm up, then run (fn, args, kwargs) messages, each within the memory allowance, until EOF."""
    if warmup is not None:
        try:
            warmup()
        except Exception:  # noqa: BLE001 - a model that fails to load fails again, with its sentence, in the call
            pass
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()  # unpickling imports the function's module: outside the allowance
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - a function this process cannot import
            conn.send(("raised", RuntimeError(f"the worker could not load the call ({type(exc).__name__}: {exc}).")))
            continue
        fn, args, kwargs, with_progress = message
        if with_progress:
            kwargs = {**kwargs, "on_step": lambda *a: conn.send(("progress", a))}
        try:
            with memory_allowance(allowance_bytes):
                reply = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller, nothing kills the loop
            reply = ("memory", None) if is_out_of_memory(exc) else ("raised", exc)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", None))
        except Exception as exc:  # noqa: BLE001 - an exception (or result) that does not pickle
            conn.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))
        del reply
        from ecgcore.read.analyze import release_memory

        release_memory()  # a large photo's activations are hundreds of MB used once: give them back to the OS


class Worker:
    """One worker process that runs calls one at a time (callers from several threads wait their turn).

    ``warmup`` (a module-level function, or a partial of one) runs in the child when it starts, so that what every
    call needs (imports, models) is loaded once, outside the calls' memory allowance.
    """

    def __init__(self, allowance_bytes: int = MEMORY_ALLOWANCE_BYTES, timeout_s: float = CALL_TIMEOUT_S,
                 warmup: Callable[[], Any] | None = None):
        self.allowance_bytes = int(allowance_bytes)
        self.timeout_s = float(timeout_s)
        self.warmup = warmup
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self.restarts = 0  # workers replaced after a failure (for tests and logs)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def call(self, fn: Callable[..., Any], *args: Any, on_progress: Callable[..., None] | None = None,
             timeout_s: float | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the worker, returning its result or raising what it raised (DigitizationError,
        ModelError, ... come back as themselves). With ``on_progress``, ``fn`` gets an ``on_step`` callback whose
        calls are forwarded to it here. Raises WorkerError with one sentence when the call needs more memory than
        allowed, runs past ``timeout_s``, or the worker dies; the next call gets a fresh worker."""
        with self._lock:
            conn = self._ensure_started()
            try:
                conn.send((fn, args, kwargs, on_progress is not None))
            except (OSError, EOFError):
                self._stop()
                raise WorkerError("the analysis worker could not be reached; it has been restarted, please try "
                                  "again.") from None
            deadline = time.monotonic() + (self.timeout_s if timeout_s is None else float(timeout_s))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stop()
                    raise WorkerError(f"the analysis took longer than {self.timeout_s if timeout_s is None else timeout_s:g} s "
                                      "and was stopped; this image is probably not an ECG printout.")
                try:
                    ready = conn.poll(min(remaining, POLL_S))
                    message = conn.recv() if ready else None
                except (OSError, EOFError):
                    message = None
                    ready = True  # the pipe closed: the worker is gone
                if message is None:
                    if ready or not self._process.is_alive():
                        raise self._died()
                    continue
                kind, payload = message
                if kind == "progress":
                    if on_progress is not None:
                        on_progress(*payload)
                    continue
                if kind == "ok":
                    return payload
                if kind == "memory":
                    # The worker survived (the allocation failed cleanly), but its heap may be fragmented: replace it.
                    self._stop()
                    raise WorkerError(memory_sentence(self.allowance_bytes))
                raise payload

    def close(self) -> None:
        """Stop the worker process (a later call starts a new one)."""
        with self._lock:
            self._stop()

    # --- internals ---

    def _ensure_started(self):
        if self._process is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            self._stop()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child, self.allowance_bytes, self.warmup), daemon=True,
                              name="ecglab-analysis-worker")
        process.start()
        child.close()
        self._process, self._conn = process, parent
        try:
            if not parent.poll(START_TIMEOUT_S):
                raise EOFError
            kind, _ = parent.recv()
            if kind != "ready":
                raise EOFError
        except (OSError, EOFError):
            self._stop()
            raise WorkerError("the analysis worker could not be started; please try again.") from None
        return parent

    def _died(self) -> WorkerError:
        process = self._process
        process.join(timeout=5.0)
        code = process.exitcode
        self._stop()
        if code is not None and code == -9:  # SIGKILL: most often the kernel's OOM killer
            return WorkerError(memory_sentence(self.allowance_bytes))
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return WorkerError(f"the analysis stopped unexpectedly (its worker process ended with {how}); it has been "
                           "restarted, please try again or try another photo.")

    def _stop(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(timeout=10.0)
            self.restarts += 1


# --- the Classify page's analysis -------------------------------------------------------------------------------


def analyze_with_weights(rgb, layout: str, weights: Weights, on_step: Callable[[str, float], None] | None = None):
    """:func:`ecgcore.read.analyze.analyze_photo` (without attribution) with the models in ``weights`` (segmentation,
    signal, image; None = shipped), loaded once per process (ecgcore.read.models). Meant to run in a :class:`Worker`."""
    from ecgcore.read.analyze import analyze_photo

    segmenter, classifiers = models.load(*weights)
    return analyze_photo(rgb, layout=layout, on_step=on_step, segmenter=segmenter, classifiers=classifiers,
                         explain=False)


def reread_with_weights(rgb, class_map, curve_margin, layout: str, lead_boxes: list, fs: int, weights: Weights):
    """:func:`ecgcore.read.analyze.analyze_photo` on a photo already segmented (``class_map``, ``curve_margin``), read
    with lead boxes a person drew, with the models in ``weights``. Meant to run in a :class:`Worker`."""
    from ecgcore.read.analyze import KnownClassMap, analyze_photo

    classifiers = models.classifiers(*weights[1:])
    return analyze_photo(rgb, layout=layout, lead_boxes=lead_boxes, fs=fs, explain=False,
                         segmenter=KnownClassMap(class_map, curve_margin), classifiers=classifiers)


def load_models(weights: Weights) -> None:
    """Load the models of :func:`analyze_with_weights` now (a worker's warm-up: ``functools.partial(load_models,
    weights)``), so that its first analysis takes no longer than the next."""
    models.load(*weights)
