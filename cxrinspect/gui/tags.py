"""The tag panel: DICOM header (or a raster file's summary) with search; patient identity hidden until revealed."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..imaging import Radiograph
from ..imaging.dicom import IDENTITY_TAGS

HIDDEN = "(hidden: patient identity)"
IDENTIFYING = set(IDENTITY_TAGS) | {
    "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "MilitaryRank",
    "InstitutionAddress", "PerformingPhysicianName", "OperatorsName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "RequestingPhysician", "StudyTime", "SeriesDate", "AcquisitionDate", "ContentDate",
    "InstanceCreationDate", "IssuerOfPatientID", "PatientBirthTime", "EthnicGroup", "PatientComments",
    "DeviceSerialNumber", "StationName",
}


def identifying(element) -> bool:
    """Patient module (group 0010) and the identity fields the reader withholds, plus people and places."""
    return element.tag.group == 0x0010 or element.keyword in IDENTIFYING


class TagPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.search = QLineEdit(placeholderText="Search tags (name, number or value)")
        self.search.setClearButtonEnabled(True)
        self.reveal = QCheckBox("Reveal patient identity")
        self.reveal.setToolTip("Patient name, IDs, dates and other identifying fields stay hidden until you tick this")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Name", "Value"])
        self.tree.setColumnWidth(0, 90)
        self.tree.setColumnWidth(1, 170)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search)
        layout.addWidget(self.reveal)
        layout.addWidget(self.tree, 1)
        self.radiograph: Radiograph | None = None
        self.search.textChanged.connect(self._filter)
        self.reveal.toggled.connect(lambda _on: self.show_radiograph(self.radiograph))

    def show_radiograph(self, radiograph: Radiograph | None) -> None:
        self.radiograph = radiograph
        self.tree.clear()
        if radiograph is None:
            return
        summary = QTreeWidgetItem(["", "Summary", radiograph.name])
        self.tree.addTopLevelItem(summary)
        for key, value in radiograph.metadata.items():
            summary.addChild(QTreeWidgetItem(["", str(key), str(value)]))
        for note in radiograph.warnings:
            summary.addChild(QTreeWidgetItem(["", "warning", note]))
        if radiograph.identity:
            who = QTreeWidgetItem(["", "Patient identity", "" if self.reveal.isChecked() else HIDDEN])
            self.tree.addTopLevelItem(who)
            if self.reveal.isChecked():
                for key, value in radiograph.identity.items():
                    who.addChild(QTreeWidgetItem(["", key, value]))
        summary.setExpanded(True)
        if radiograph.header is not None:
            self._add_dataset(self.tree.invisibleRootItem(), radiograph.header)
        self._filter(self.search.text())

    def _add_dataset(self, parent: QTreeWidgetItem, dataset) -> None:
        reveal = self.reveal.isChecked()
        for element in dataset:
            tag = f"{element.tag.group:04X},{element.tag.element:04X}"
            name = element.keyword or element.name
            if element.VR == "SQ":
                item = QTreeWidgetItem([tag, name, f"{len(element.value)} item(s)"])
                for i, child in enumerate(element.value):
                    sub = QTreeWidgetItem(["", f"item {i + 1}", ""])
                    self._add_dataset(sub, child)
                    item.addChild(sub)
            else:
                if identifying(element) and not reveal:
                    value = HIDDEN
                elif element.VR in ("OB", "OW", "OF", "OD", "UN") or element.is_empty is False and len(str(element.value)) > 200:
                    value = str(element.value)[:200] + "…"
                else:
                    value = str(element.value)
                item = QTreeWidgetItem([tag, name, value])
            parent.addChild(item)

    def _filter(self, text: str) -> None:
        text = text.strip().lower()

        def visit(item: QTreeWidgetItem) -> bool:
            child_match = [visit(item.child(i)) for i in range(item.childCount())]  # visit every child
            child_match = any(child_match)
            match = not text or any(text in item.text(c).lower() for c in range(3)) or child_match
            item.setHidden(not match)
            if text and child_match:
                item.setExpanded(True)
            return match

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i))
