"""The core (everything outside cxrinspect/gui) must import and run with Qt unavailable."""

import subprocess
import sys
import textwrap

CORE = ["cxrinspect", "cxrinspect.cli", "cxrinspect.imaging", "cxrinspect.model", "cxrinspect.inference",
        "cxrinspect.trigger", "cxrinspect.model.onnx_export", "cxrinspect.scan.compactness", "cxrinspect.training"]


def test_core_imports_with_qt_blocked():
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        BLOCKED = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("Qt is blocked in the headless core: " + name)
        sys.meta_path.insert(0, Block())
        import cxrinspect
        names = set({CORE!r})
        for pkg in ("cxrinspect.imaging", "cxrinspect.model", "cxrinspect.inference", "cxrinspect.saliency", "cxrinspect.scan", "cxrinspect.audit",
                    "cxrinspect.training"):
            mod = importlib.import_module(pkg)
            names.update(m.name for m in pkgutil.walk_packages(mod.__path__, pkg + "."))
        for name in sorted(names):
            if ".gui" not in name:
                importlib.import_module(name)
        print(len(names))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= len(CORE)
