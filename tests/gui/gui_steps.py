"""Steps the GUI tests share (waits end as soon as the signal comes; the limit allows for a busy machine)."""

WAIT_MS = 60_000


def open_folder(qtbot, window, folder):
    """Open ``folder`` and wait until the first image is on screen."""
    with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
        window.open_folder(str(folder))


def wait_thumbnails(qtbot, window):
    qtbot.waitUntil(lambda: not window.workers.busy(), timeout=WAIT_MS)


def load_model(qtbot, window, path):
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.set_model(str(path))
