"""Work off the UI thread: functions run in worker threads, their results come back on the UI thread.

A worker never touches a widget, nor any Qt object: it returns a value (or hands partial results to
``job.emit``) and the results wait in a thread-safe queue that a QTimer on the UI thread drains while
jobs are pending; the callbacks run there. Every job can be cancelled; a cancelled job's late results
are dropped, so a slow decode of an image the user already left never overwrites the image now shown.

Why plain Python threads and no QThreadPool / cross-thread signals: with PySide6 6.12.0 on CPython 3.11
every Python run in a Qt-created thread (QThreadPool.start, QRunnable.run, QThread.run) drops one
reference to None, and emitting a signal from a Python thread corrupts the refcount of True/False;
after a few thousand jobs the interpreter aborts ("deallocating None"). Measured here; see
tests/gui/test_gui_workers.py, which guards against it.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections.abc import Callable

from PySide6.QtCore import QTimer

_STOP = object()


class Job:
    """What a worker function receives, and what the caller keeps: cancel it, ask whether it was."""

    def __init__(self, name: str, inbox: queue.SimpleQueue):
        self.name = name
        self._cancelled = threading.Event()
        self._inbox = inbox

    def cancel(self) -> None:
        self._cancelled.set()

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, item) -> None:
        """Hand one partial result (a thumbnail, a scan record) to the UI thread."""
        if not self.cancelled():
            self._inbox.put(("item", self, item))


class Workers:
    """A few worker threads with a priority queue, plus the bookkeeping to cancel, supersede and wait for jobs."""

    def __init__(self, max_threads: int = 4, poll_ms: int = 10, budget_ms: float = 15.0):
        self.max_threads = max_threads
        self.budget_s = budget_ms / 1000
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._lock = threading.Lock()
        self._callbacks: dict[Job, tuple] = {}
        self._keyed: dict[str, Job] = {}
        self._closed = False
        self._timer = QTimer()
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.deliver)

    # ------------------------------------------------------------------ submitting
    def submit(self, fn: Callable[[Job], object], *, name: str = "job", key: str | None = None, priority: int = 0,
               on_done: Callable | None = None, on_error: Callable[[str], None] | None = None,
               on_item: Callable | None = None) -> Job:
        """Run ``fn(job)`` in a worker (higher ``priority`` first). A job with the same ``key`` as a pending one
        cancels that one. ``on_done(result)``, ``on_error(message)`` and ``on_item(item)`` run on the UI thread,
        never after the job was cancelled."""
        job = Job(name, self._inbox)
        if self._closed:
            job.cancel()
            return job
        if key is not None:
            old = self._keyed.get(key)
            if old is not None:
                old.cancel()
            self._keyed[key] = job
        self._callbacks[job] = (on_done, on_error, on_item, key)
        self._queue.put((-priority, next(self._order), job, fn))
        with self._lock:
            idle_threads = len(self._threads) - self._running
        if self._queue.qsize() > idle_threads and len(self._threads) < self.max_threads:
            thread = threading.Thread(target=self._work, name=f"cxrinspect-worker-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if not self._timer.isActive():
            self._timer.start()
        return job

    def _work(self) -> None:
        while True:
            _, _, job, fn = self._queue.get()
            if job is _STOP:
                return
            with self._lock:
                self._running += 1
            try:
                if job.cancelled():
                    self._inbox.put(("done", job, None))
                    continue
                try:
                    result = fn(job)
                except Exception as e:  # noqa: BLE001 - reported to the UI thread, never raised in the worker
                    ours = type(e).__module__.startswith("cxrinspect")  # our errors name the file and the reason
                    if not ours:
                        traceback.print_exc()
                    self._inbox.put(("failed", job, str(e) if ours else f"{type(e).__name__}: {e}"))
                else:
                    self._inbox.put(("done", job, result))
            finally:
                with self._lock:
                    self._running -= 1

    # ------------------------------------------------------------------ on the UI thread
    def deliver(self) -> None:
        """Run the callbacks of what the workers sent, for at most the time budget (the rest waits a tick)."""
        import time

        end = time.perf_counter() + self.budget_s
        while time.perf_counter() < end:
            try:
                kind, job, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            callbacks = self._callbacks.get(job)
            if callbacks is None:
                continue
            on_done, on_error, on_item, key = callbacks
            if kind == "item":
                if on_item is not None and not job.cancelled():
                    on_item(payload)
                continue
            del self._callbacks[job]
            if key is not None and self._keyed.get(key) is job:
                del self._keyed[key]
            if job.cancelled():
                continue
            if kind == "done" and on_done is not None:
                on_done(payload)
            elif kind == "failed" and on_error is not None:
                on_error(payload)
        if not self._callbacks and self._inbox.empty():
            self._timer.stop()

    def cancel(self, key: str) -> None:
        job = self._keyed.get(key)
        if job is not None:
            job.cancel()

    def active_threads(self) -> int:
        with self._lock:
            return self._running

    def busy(self) -> bool:
        """Jobs are queued, running, or waiting for the UI thread to hear from them."""
        return bool(self._callbacks) or self.active_threads() > 0

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Cancel everything, stop the threads (each finishes its current job first). True when all stopped."""
        self._closed = True
        self._timer.stop()
        for job in list(self._callbacks):
            job.cancel()
        for _ in self._threads:
            self._queue.put((float("inf"), next(self._order), _STOP, None))
        for thread in self._threads:
            thread.join(timeout_s)
        stopped = not any(t.is_alive() for t in self._threads)
        self._callbacks.clear()
        self._keyed.clear()
        return stopped
