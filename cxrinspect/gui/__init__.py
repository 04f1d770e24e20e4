"""The desktop app (PySide6 + pyqtgraph): browse, view, predict, explain and scan. The ONLY Qt code.

Start it with :func:`cxrinspect.gui.app.main` or ``python -m cxrinspect.gui [FOLDER] [--model PATH]``.
"""
