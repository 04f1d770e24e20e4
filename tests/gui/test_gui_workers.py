"""Workers: results on the UI thread, cancel drops late results, a key supersedes, errors are messages,
shutdown stops every thread, and running thousands of jobs leaves the interpreter's refcounts intact
(PySide6 6.12 + CPython 3.11 QThreadPool / cross-thread signals do not: see cxrinspect/gui/workers.py)."""

import gc
import sys
import threading
import time

from cxrinspect.gui.workers import Workers


def run_until(qtbot, workers):
    qtbot.waitUntil(lambda: not workers.busy(), timeout=30_000)


def test_results_items_errors_and_cancel(qtbot):
    workers = Workers(max_threads=2)
    main = threading.current_thread()
    got, threads = [], []

    def done(value):
        threads.append(threading.current_thread())
        got.append(("done", value))

    def counting(job):
        for i in range(3):
            job.emit(i)
        return "finished"

    workers.submit(counting, on_done=done, on_item=lambda i: got.append(("item", i)))
    workers.submit(lambda job: 1 / 0, on_error=lambda message: got.append(("error", message)))
    release = threading.Event()
    slow = workers.submit(lambda job: release.wait(10) and "late", on_done=lambda v: got.append(("slow", v)))
    slow.cancel()
    release.set()
    run_until(qtbot, workers)
    assert ("done", "finished") in got and [g for g in got if g[0] == "item"] == [("item", 0), ("item", 1), ("item", 2)]
    assert ("error", "ZeroDivisionError: division by zero") in got
    assert not any(g[0] == "slow" for g in got)  # cancelled: its result is dropped
    assert threads == [main]  # callbacks ran on the UI thread
    assert workers.shutdown() and not any(t.is_alive() for t in workers._threads)


def test_a_key_supersedes_and_priority_orders(qtbot):
    workers = Workers(max_threads=1)
    gate = threading.Event()
    order = []
    workers.submit(lambda job: gate.wait(10))  # occupies the only thread
    time.sleep(0.05)
    workers.submit(lambda job: order.append("low"), priority=-1)
    first = workers.submit(lambda job: order.append("old decode"), key="decode", priority=2)
    workers.submit(lambda job: order.append("decode"), key="decode", priority=2)
    assert first.cancelled()
    gate.set()
    run_until(qtbot, workers)
    assert order == ["decode", "low"]
    workers.shutdown()


def test_thousands_of_jobs_keep_refcounts_intact():
    """In a fresh interpreter, so objects other tests free do not move the count."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import gc, sys
        from PySide6.QtWidgets import QApplication
        from cxrinspect.gui.workers import Workers
        app = QApplication([])
        workers = Workers(max_threads=4)
        gc.collect()
        before = sys.getrefcount(None)
        for _ in range(3000):
            workers.submit(lambda job: job.emit(True) or None, on_item=lambda item: None)
        while workers.busy():
            app.processEvents()
        workers.shutdown()
        gc.collect()
        print(sys.getrefcount(None) - before)
    """)
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.strip().splitlines()[-1]) > -300  # QThreadPool on PySide6 6.12 loses one per job


def test_this_pyside_keeps_none_alive(qapp):
    """PySide6 6.12.0 (CPython 3.11) lost a reference to None on every void call, so the window aborted after a
    while ("deallocating None"); pyproject excludes it. This catches such a release before users do."""
    from PySide6.QtCore import QObject, QTimer

    timer, obj = QTimer(), QObject()
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(5000):
        timer.setInterval(5)
        obj.setObjectName("x")
        qapp.processEvents()
    assert sys.getrefcount(None) - before > -500
