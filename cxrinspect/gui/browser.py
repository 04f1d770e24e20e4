"""The file list: a folder's radiographs (DICOM found by content), lazily made thumbnails, a name filter,
and unreadable files marked with their reason instead of a dialog."""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QLabel, QLineEdit, QListView, QStyle, QVBoxLayout, QWidget

PATH_ROLE = Qt.ItemDataRole.UserRole + 1
ERROR_ROLE = Qt.ItemDataRole.UserRole + 2
THUMBNAIL = 72


def without_path(path: str, message: str) -> str:
    """An ImageReadError message without the path it starts with (the entry showing it already names the file)."""
    return message.removeprefix(f"{path}: ")


def make_thumbnail(path: str, size: int = THUMBNAIL) -> np.ndarray:
    """The default presentation, shrunk to fit ``size`` pixels, as 8-bit grey (runs in a worker)."""
    from PIL import Image

    from ..imaging import load, render

    image = Image.fromarray(render(load(path)))
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(image))


def icon_from_grey(grey: np.ndarray) -> QIcon:
    rows, cols = grey.shape
    image = QImage(grey.data, cols, rows, cols, QImage.Format.Format_Grayscale8).copy()
    return QIcon(QPixmap.fromImage(image))


class Browser(QWidget):
    """Lists image files; says which one the user picked (``image_selected(path)``)."""

    image_selected = Signal(str)
    rows_shown = Signal(list)  # paths now on screen (after a scroll or a filter), for the thumbnail worker

    def __init__(self, parent=None):
        super().__init__(parent)
        self.filter = QLineEdit(placeholderText="Filter by name")
        self.filter.setClearButtonEnabled(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.model = QStandardItemModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.list = QListView()
        self.list.setModel(self.proxy)
        self.list.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.list.setUniformItemSizes(True)
        self.list.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.filter)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.summary)
        self._items: dict[str, QStandardItem] = {}
        self._placeholder = self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)
        self._bad = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        self.list.verticalScrollBar().valueChanged.connect(self._shown)
        self.proxy.layoutChanged.connect(self._shown)
        self.proxy.rowsRemoved.connect(self._shown)

    def on_screen(self) -> list[str]:
        """Paths of the rows inside the list's viewport."""
        first = self.list.indexAt(self.list.viewport().rect().topLeft())
        if not first.isValid():
            return []
        last = self.list.indexAt(self.list.viewport().rect().bottomLeft())
        end = last.row() if last.isValid() else self.proxy.rowCount() - 1
        return [self.proxy.index(r, 0).data(PATH_ROLE) for r in range(first.row(), end + 1)]

    def _shown(self, *_):
        paths = self.on_screen()
        if paths:
            self.rows_shown.emit(paths)

    def set_files(self, root: str, paths: list[str], problems: list[tuple[str, str]] = ()) -> None:
        self.model.clear()
        self._items.clear()
        for path in paths:
            item = QStandardItem(self._placeholder, os.path.relpath(path, root) if root else os.path.basename(path))
            item.setData(path, PATH_ROLE)
            item.setToolTip(path)
            self._items[path] = item
            self.model.appendRow(item)
        text = f"{len(paths)} image file(s)"
        if problems:
            text += f"; {len(problems)} problem(s): " + "; ".join(f"{os.path.basename(p)}: {r}" for p, r in problems[:3])
        self.summary.setText(text)
        self.summary.setToolTip("\n".join(f"{p}: {r}" for p, r in problems))

    def paths(self) -> list[str]:
        """All files, in list order (ignoring the filter)."""
        return list(self._items)

    def visible_paths(self) -> list[str]:
        return [self.proxy.index(i, 0).data(PATH_ROLE) for i in range(self.proxy.rowCount())]

    def set_thumbnail(self, path: str, grey: np.ndarray) -> None:
        item = self._items.get(path)
        if item is not None and item.data(ERROR_ROLE) is None:
            item.setIcon(icon_from_grey(grey))

    def mark_bad(self, path: str, reason: str) -> None:
        """A warning icon, the reason in the tooltip; the entry stays so the user can see what happened."""
        item = self._items.get(path)
        if item is not None:
            item.setIcon(self._bad)
            item.setData(reason, ERROR_ROLE)
            item.setToolTip(f"{path}\ncannot be read: {reason}")

    def error_of(self, path: str) -> str | None:
        item = self._items.get(path)
        return None if item is None else item.data(ERROR_ROLE)

    def current_path(self) -> str | None:
        index = self.list.currentIndex()
        return index.data(PATH_ROLE) if index.isValid() else None

    def select(self, path: str) -> bool:
        item = self._items.get(path)
        if item is None:
            return False
        index = self.proxy.mapFromSource(item.index())
        if not index.isValid():  # filtered out: clear the filter so the user sees where they are
            self.filter.clear()
            index = self.proxy.mapFromSource(item.index())
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index)
        return True

    def step(self, offset: int) -> None:
        """Next (+1) or previous (-1) image in the filtered list; stops at the ends."""
        n = self.proxy.rowCount()
        if n == 0:
            return
        current = self.list.currentIndex()
        row = 0 if not current.isValid() else min(max(current.row() + offset, 0), n - 1)
        self.list.setCurrentIndex(self.proxy.index(row, 0))

    def _current_changed(self, current, _previous) -> None:
        if current.isValid():
            self.image_selected.emit(current.data(PATH_ROLE))
