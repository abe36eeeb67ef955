"""The analysis worker (ecgcore.read.isolate): whatever a call does in the worker (allocate without end, run forever, kill
its process), the caller gets one sentence and the next call works."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ecgcore.errors import DigitizationError
from ecgcore.read.isolate import MEMORY_SENTENCE, Worker, WorkerError, is_out_of_memory

ALLOWANCE = 512 * 2**20  # small, so that the tests' runaway allocation fails at once


def add(a: int, b: int) -> int:
    return a + b


def allocate_gb(gb: float) -> int:
    """Touch ``gb`` GB (what a reader sizing an array from a bogus grid fit did)."""
    block = np.ones(int(gb * 2**30) // 8)
    return int(block.size)


def refuse() -> None:
    raise DigitizationError("no ECG layout found: a test sentence.")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def with_steps(n: int, on_step=None) -> int:
    for i in range(n):
        on_step(f"step {i}", i / n)
    return n


@pytest.fixture
def worker():
    w = Worker(allowance_bytes=ALLOWANCE, timeout_s=60.0)
    yield w
    w.close()


def test_a_call_runs_in_another_process_and_keeps_it(worker):
    assert worker.call(add, 2, b=3) == 5
    pid = worker.pid
    assert pid != os.getpid()
    assert worker.call(add, 1, 1) == 2 and worker.pid == pid  # the same worker: its caches (models) are kept


def test_too_much_memory_gives_the_sentence_and_the_next_call_works(worker):
    before = worker.call(add, 0, 0)
    with pytest.raises(WorkerError) as info:
        worker.call(allocate_gb, 2.0)  # four times the allowance
    assert "needed more memory than allowed" in str(info.value)
    assert str(info.value) == MEMORY_SENTENCE.format(gb=ALLOWANCE / 2**30)
    assert worker.call(add, 2, 2) == 4 and before == 0
    assert worker.call(allocate_gb, 0.1) > 0  # within the allowance: fine


def test_a_killed_worker_is_replaced(worker):
    first = (worker.call(add, 0, 1), worker.pid)[1]
    with pytest.raises(WorkerError, match="more memory than allowed"):  # SIGKILL is what the OOM killer sends
        worker.call(die)
    assert worker.call(add, 3, 4) == 7
    assert worker.pid != first and worker.restarts >= 1


def test_a_call_past_its_timeout_is_stopped(worker):
    with pytest.raises(WorkerError, match="longer than 1 s"):
        worker.call(sleep, 30.0, timeout_s=1.0)
    assert worker.call(add, 5, 5) == 10


def test_the_readers_sentences_come_back_as_themselves(worker):
    with pytest.raises(DigitizationError, match="no ECG layout found"):
        worker.call(refuse)
    assert worker.call(add, 1, 2) == 3


def test_progress_is_forwarded(worker):
    seen = []
    assert worker.call(with_steps, 3, on_progress=lambda name, fraction: seen.append((name, fraction))) == 3
    assert [name for name, _ in seen] == ["step 0", "step 1", "step 2"]


def test_out_of_memory_is_recognised_in_every_library_s_words():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(Exception("OpenCV(4.10) error: (-4:Insufficient memory) Failed to allocate 9 bytes"))
    assert not is_out_of_memory(DigitizationError("no ECG layout found: out of memory is not this"))
