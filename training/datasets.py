"""Labelled radiograph datasets and their patient-level splits.

A :class:`Dataset` is a table: one row per image (path relative to ``root``, patient id, label vector).
Labels are floats: 1 positive, 0 negative, NaN unknown (ignored by the loss and by every metric).
Four formats are read:

- ``kermany``: any folder laid out like Kermany et al. 2018 (``NORMAL/``, ``PNEUMONIA/`` and a
  ``labels.csv`` with ``path,patient_id,finding``, finding in normal/bacteria/virus), mapped to the labels
  Pneumonia, Bacterial, Viral (normal = all 0, bacteria = Pneumonia+Bacterial, virus = Pneumonia+Viral).
  Without ``labels.csv`` the finding and patient id are read from the usual public file names
  (``person12_bacteria_34.jpeg``, ``IM-0001-0001.jpeg``), and a note says so.
- ``nih14``: the official ``Data_Entry_2017*.csv`` of NIH ChestX-ray14 and an image folder searched
  recursively (``images/``, ``images_001/images/``, ...); the 14 labels in CheXNet order.
- ``chexpert``: a CheXpert-style CSV (``Path`` + observation columns: 1 positive, 0 or blank negative,
  -1 uncertain). Uncertain labels follow ``uncertain``: ``zeros`` (default, U-Zeros), ``ones`` (U-Ones) or
  ``ignore`` (NaN: left out of the loss and the metrics). "No Finding" is not a label by default.
- ``csv``: a generic CSV: a path column and either one 0/1 column per label or one findings column of
  label names joined by ``|``.

Bad input stops here, before any training: a CSV without its columns, an unknown label name, a value
that is not a label, an image listed but missing (``on_missing = "error"``, the default; ``"skip"`` drops
those rows with a logged count). Images that exist but cannot be decoded are found when the cache is
built (see :mod:`.cache`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrinspect import atomic

log = logging.getLogger("cxrinspect.training")

FORMATS = ("auto", "kermany", "nih14", "chexpert", "csv")

KERMANY_LABELS = ["Pneumonia", "Bacterial", "Viral"]
KERMANY_FINDINGS = {
    "normal": (0.0, 0.0, 0.0),
    "bacteria": (1.0, 1.0, 0.0), "bacterial": (1.0, 1.0, 0.0),
    "virus": (1.0, 0.0, 1.0), "viral": (1.0, 0.0, 1.0),
}

NIH14_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
"""NIH ChestX-ray14 labels in the order of CheXNet (Rajpurkar et al. 2017)."""
NO_FINDING = "No Finding"

CHEXPERT_OBSERVATIONS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                         "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                         "Pleural Other", "Fracture", "Support Devices"]
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp", ".mha", ".mhd", ".nrrd",
                  ".nii", ".nii.gz")
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The data cannot be used as given; the message says which file, row or value and what to do."""


@dataclass
class DataOptions:
    """How to read a dataset (the ``[data]`` table of a recipe, less the split)."""

    format: str = "auto"
    path: str = ""
    csv: str = ""
    images: str = ""
    labels: list[str] = field(default_factory=list)
    path_column: str = ""
    patient_column: str = ""
    findings_column: str = ""
    findings_separator: str = "|"
    uncertain: str = "zeros"
    on_missing: str = "error"


@dataclass
class Dataset:
    """One row per image; ``paths`` are relative to ``root`` (POSIX separators)."""

    format: str
    root: Path
    labels: list[str]
    paths: list[str]
    patients: list[str]
    targets: np.ndarray  # (N, L) float32: 1, 0, or NaN (unknown)
    source: str = ""  # the label file
    notes: list[str] = field(default_factory=list)
    stamps: list[tuple[int, int]] = field(default_factory=list)  # (size, mtime_ns) per image

    def __post_init__(self):
        self.root = Path(self.root).absolute()
        self.targets = np.asarray(self.targets, dtype=np.float32).reshape(len(self.paths), len(self.labels))
        if len(self.patients) != len(self.paths):
            raise ValueError("paths and patients differ in length")

    def __len__(self) -> int:
        return len(self.paths)

    def file(self, i: int) -> Path:
        return self.root / self.paths[i]

    def fingerprint(self) -> str:
        """SHA-256 of what the images are: format, root, labels, paths and each file's size and mtime."""
        h = hashlib.sha256()
        h.update(json.dumps([self.format, str(self.root), self.labels]).encode())
        for i, p in enumerate(self.paths):
            stamp = self.stamps[i] if self.stamps else (0, 0)
            h.update(f"{p}\0{stamp[0]}\0{stamp[1]}\n".encode())
        return h.hexdigest()

    def label_digest(self) -> str:
        """SHA-256 of the listing and its labels (not the files' stamps): equal for the same data anywhere."""
        h = hashlib.sha256()
        h.update(json.dumps(self.labels).encode())
        for p, pid, t in zip(self.paths, self.patients, self.targets):
            h.update(f"{p}\0{pid}\0{','.join('nan' if math.isnan(v) else f'{v:g}' for v in t)}\n".encode())
        return h.hexdigest()

    def subset(self, indices) -> "Dataset":
        idx = [int(i) for i in indices]
        return Dataset(self.format, self.root, list(self.labels), [self.paths[i] for i in idx],
                       [self.patients[i] for i in idx], self.targets[idx], self.source, list(self.notes),
                       [self.stamps[i] for i in idx] if self.stamps else [])

    def describe(self) -> dict:
        positives = {lab: int(np.nansum(self.targets[:, j] == 1)) for j, lab in enumerate(self.labels)}
        return {"format": self.format, "root": str(self.root), "source": self.source, "images": len(self),
                "patients": len(set(self.patients)), "labels": list(self.labels), "positives": positives}


# ---------------------------------------------------------------------------------------------- reading CSV


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
                    for row in reader]
    except FileNotFoundError as e:
        raise DataError(f"{path}: label file not found") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV ({e})") from e
    if not columns:
        raise DataError(f"{path}: CSV has no header row")
    if not rows:
        raise DataError(f"{path}: CSV has a header but no rows")
    return columns, rows


def _require_columns(path: Path, columns: list[str], required: list[str], what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: CSV lacks column(s) {missing} needed for {what}; it has {columns}")


def _check_files(ds: Dataset, on_missing: str) -> Dataset:
    """Stat every image (recording size and mtime for the cache key); missing ones stop or are dropped."""
    if on_missing not in ("error", "skip"):
        raise DataError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    stamps, keep, missing = [], [], []
    for i, p in enumerate(ds.paths):
        try:
            st = os.stat(ds.root / p)
            if not os.path.isfile(ds.root / p):
                raise FileNotFoundError
        except OSError:
            missing.append(i)
            continue
        keep.append(i)
        stamps.append((int(st.st_size), int(st.st_mtime_ns)))
    if missing:
        shown = ", ".join(str(ds.root / ds.paths[i]) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        if on_missing == "error":
            raise DataError(f"{len(missing)} image(s) listed in {ds.source} are missing: {shown}{more}. "
                            "Check the data path, or set data.on_missing = \"skip\" to drop them")
        log.warning("skipping %d image(s) listed in %s but missing: %s%s", len(missing), ds.source, shown, more)
        ds.notes.append(f"{len(missing)} listed image(s) missing and skipped")
        ds = ds.subset(keep)
        ds.stamps = stamps
    else:
        ds.stamps = stamps
    if len(ds) == 0:
        raise DataError(f"{ds.source}: no usable images")
    return ds


def _relative(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


# ---------------------------------------------------------------------------------------------- Kermany

_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_\d+", re.I)
_NORMAL = re.compile(r"^((?:NORMAL\d*-)?IM-\d+)", re.I)  # IM-0435-0001(-0001), NORMAL2-IM-0012-0001


def _kermany_from_names(root: Path) -> tuple[list[str], list[str], list[str]]:
    paths, patients, findings = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        cls = Path(dirpath).name.upper()
        if cls not in ("NORMAL", "PNEUMONIA"):
            continue
        for name in sorted(filenames):
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            full = Path(dirpath) / name
            stem = Path(name).stem
            if cls == "NORMAL":
                finding = "normal"
                m = _NORMAL.match(stem)
                patient = "normal-" + (m.group(1) if m else stem)
            else:
                m = _PERSON.match(stem)
                if not m:
                    raise DataError(f"{full}: PNEUMONIA file name does not say bacteria or virus "
                                    "(expected personN_bacteria_M / personN_virus_M); add a labels.csv")
                patient, finding = m.group(1), m.group(2).lower()
            paths.append(_relative(root, full))
            patients.append(patient)
            findings.append(finding)
    return paths, patients, findings


def read_kermany(root: str | Path, on_missing: str = "error", csv_path: str | Path | None = None) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Kermany data folder not found")
    labels_csv = Path(csv_path) if csv_path else root / "labels.csv"
    notes = []
    if labels_csv.is_file():
        columns, rows = _read_csv(labels_csv)
        _require_columns(labels_csv, columns, ["path", "patient_id", "finding"], "the Kermany layout")
        paths, patients, findings = [], [], []
        for n, row in enumerate(rows, start=2):
            if not row["path"]:
                raise DataError(f"{labels_csv}, line {n}: empty path")
            if not row["patient_id"]:
                raise DataError(f"{labels_csv}, line {n}: empty patient_id (splits are by patient)")
            paths.append(row["path"].replace("\\", "/"))
            patients.append(row["patient_id"])
            findings.append(row["finding"].lower())
        source = str(labels_csv)
    else:
        paths, patients, findings = _kermany_from_names(root)
        if not paths:
            raise DataError(f"{root}: neither a labels.csv nor NORMAL/ and PNEUMONIA/ image folders")
        notes.append("no labels.csv: findings and patient ids read from the file names")
        log.info("%s: no labels.csv; read findings and patient ids from %d file names", root, len(paths))
        source = str(root)
    targets = []
    for n, f in enumerate(findings):
        if f not in KERMANY_FINDINGS:
            raise DataError(f"{source}, row {n + 1} ({paths[n]}): unknown finding {f!r}; "
                            f"expected one of normal, bacteria, virus")
        targets.append(KERMANY_FINDINGS[f])
    ds = Dataset("kermany", root, list(KERMANY_LABELS), paths, patients, np.array(targets, np.float32), source, notes)
    return _check_files(ds, on_missing)


# ---------------------------------------------------------------------------------------------- NIH ChestX-ray14


def _index_images(root: Path) -> dict[str, Path]:
    """Basename -> path for every image file under ``root`` (NIH ships images in several folders)."""
    index: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMAGE_SUFFIXES):
                p = Path(dirpath) / name
                if name in index:
                    raise DataError(f"two images named {name} under {root}: {index[name]} and {p}")
                index[name] = p
    return index


def find_nih_csv(root: Path) -> Path | None:
    found = sorted(root.glob("Data_Entry_2017*.csv"))
    return found[-1] if found else None


def read_nih14(root: str | Path, on_missing: str = "error", csv_path: str | Path | None = None,
               images: str | Path | None = None) -> Dataset:
    root = Path(root)
    csv_file = Path(csv_path) if csv_path else (find_nih_csv(root) if root.is_dir() else None)
    if csv_file is None or not csv_file.is_file():
        raise DataError(f"{root}: no Data_Entry_2017*.csv (the NIH ChestX-ray14 label file)")
    image_root = Path(images) if images else csv_file.parent
    columns, rows = _read_csv(csv_file)
    _require_columns(csv_file, columns, ["Image Index", "Finding Labels", "Patient ID"], "NIH ChestX-ray14")
    index = _index_images(image_root)
    known = set(NIH14_LABELS)
    paths, patients, targets, missing = [], [], [], []
    for n, row in enumerate(rows, start=2):
        names = [x.strip() for x in row["Finding Labels"].split("|") if x.strip()]
        unknown = [x for x in names if x not in known and x != NO_FINDING]
        if unknown:
            raise DataError(f"{csv_file}, line {n}: unknown label(s) {unknown}; NIH labels are {NIH14_LABELS} "
                            f"or {NO_FINDING!r}")
        if not row["Patient ID"]:
            raise DataError(f"{csv_file}, line {n}: empty Patient ID (splits are by patient)")
        p = index.get(row["Image Index"])
        if p is None:
            missing.append(row["Image Index"])
            p = image_root / row["Image Index"]
        paths.append(_relative(image_root, p))
        patients.append(row["Patient ID"])
        targets.append([1.0 if lab in names else 0.0 for lab in NIH14_LABELS])
    ds = Dataset("nih14", image_root, list(NIH14_LABELS), paths, patients, np.array(targets, np.float32),
                 str(csv_file))
    if missing and len(missing) == len(rows):
        raise DataError(f"none of the {len(rows)} images listed in {csv_file} was found under {image_root}")
    return _check_files(ds, on_missing)


# ---------------------------------------------------------------------------------------------- CheXpert & generic


def _resolve_base(paths: list[str], candidates: list[Path]) -> Path:
    """The first candidate folder under which the first listed images exist (CheXpert paths start with
    the dataset folder's own name)."""
    probe = paths[: min(len(paths), 20)]
    for base in candidates:
        if any((base / p).is_file() for p in probe):
            return base
    return candidates[0]


def _patients_from_paths(paths: list[str], source: str) -> list[str]:
    out = []
    for p in paths:
        m = re.search(r"(patient\d+)", p)
        if not m:
            raise DataError(f"{source}: cannot tell the patient of {p} (no patient column and no 'patientNNN' "
                            "in the path); set data.patient_column")
        out.append(m.group(1))
    return out


def _parse_binary(value: str, where: str, uncertain: str) -> float:
    v = value.strip()
    if v == "":
        return 0.0
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 or blank") from None
    if x == 1.0:
        return 1.0
    if x == 0.0:
        return 0.0
    if x == -1.0:
        return {"zeros": 0.0, "ones": 1.0, "ignore": math.nan}[uncertain]
    raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 or blank")


def read_chexpert(csv_path: str | Path, images: str | Path | None = None, labels: list[str] | None = None,
                  uncertain: str = "zeros", on_missing: str = "error", patient_column: str = "") -> Dataset:
    csv_file = Path(csv_path)
    if uncertain not in UNCERTAIN_POLICIES:
        raise DataError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    columns, rows = _read_csv(csv_file)
    _require_columns(csv_file, columns, ["Path"], "a CheXpert-style CSV")
    if labels:
        unknown = [lab for lab in labels if lab not in columns]
        if unknown:
            raise DataError(f"{csv_file}: label column(s) {unknown} not in the CSV; it has {columns}")
        chosen = list(labels)
    else:
        chosen = [c for c in CHEXPERT_OBSERVATIONS if c in columns and c != NO_FINDING]
        if not chosen:
            raise DataError(f"{csv_file}: no CheXpert observation columns ({CHEXPERT_OBSERVATIONS[1:]}); "
                            "set data.labels")
    paths = [r["Path"].replace("\\", "/") for r in rows]
    if any(not p for p in paths):
        raise DataError(f"{csv_file}: empty Path value")
    base = Path(images) if images else _resolve_base(paths, [csv_file.parent, csv_file.parent.parent])
    if patient_column:
        _require_columns(csv_file, columns, [patient_column], "the patient split")
        patients = [r[patient_column] for r in rows]
    else:
        patients = _patients_from_paths(paths, str(csv_file))
    targets = [[_parse_binary(r[c], f"{csv_file}, line {n}, column {c!r}", uncertain) for c in chosen]
               for n, r in enumerate(rows, start=2)]
    ds = Dataset("chexpert", base, chosen, paths, patients, np.array(targets, np.float32), str(csv_file),
                 [f"uncertain (-1) labels: {uncertain}"])
    return _check_files(ds, on_missing)


def read_csv_dataset(csv_path: str | Path, images: str | Path | None = None, labels: list[str] | None = None,
                     path_column: str = "", patient_column: str = "", findings_column: str = "",
                     findings_separator: str = "|", uncertain: str = "zeros", on_missing: str = "error") -> Dataset:
    csv_file = Path(csv_path)
    columns, rows = _read_csv(csv_file)
    path_column = path_column or next((c for c in ("path", "Path", "image", "Image Index", "filename") if c in columns),
                                      "path")
    _require_columns(csv_file, columns, [path_column], "image paths (set data.path_column)")
    if not patient_column:
        patient_column = next((c for c in ("patient_id", "Patient ID", "patient") if c in columns), "")
    elif patient_column not in columns:
        _require_columns(csv_file, columns, [patient_column], "the patient split")
    paths = [r[path_column].replace("\\", "/") for r in rows]
    if any(not p for p in paths):
        raise DataError(f"{csv_file}: empty value in path column {path_column!r}")
    notes = []
    if findings_column:
        _require_columns(csv_file, columns, [findings_column], "the findings")
        found = [[x.strip() for x in r[findings_column].split(findings_separator) if x.strip()] for r in rows]
        names = sorted({x for xs in found for x in xs} - {NO_FINDING})
        chosen = list(labels) if labels else names
        if not chosen:
            raise DataError(f"{csv_file}: findings column {findings_column!r} names no label")
        allowed = set(chosen) | {NO_FINDING}
        for n, xs in enumerate(found, start=2):
            unknown = [x for x in xs if x not in allowed]
            if unknown:
                raise DataError(f"{csv_file}, line {n}: unknown label(s) {unknown}; labels are {chosen}")
        targets = [[1.0 if lab in xs else 0.0 for lab in chosen] for xs in found]
    else:
        if labels:
            _require_columns(csv_file, columns, list(labels), "the label columns")
            chosen = list(labels)
        else:
            skip = {path_column, patient_column}
            chosen = [c for c in columns if c not in skip and c
                      and all(r[c] in ("", "0", "1", "-1", "0.0", "1.0", "-1.0") for r in rows)]
            if not chosen:
                raise DataError(f"{csv_file}: no 0/1 label columns found; set data.labels or data.findings_column")
        targets = [[_parse_binary(r[c], f"{csv_file}, line {n}, column {c!r}", uncertain) for c in chosen]
                   for n, r in enumerate(rows, start=2)]
    if patient_column:
        patients = [r[patient_column] for r in rows]
        if any(not p for p in patients):
            raise DataError(f"{csv_file}: empty value in patient column {patient_column!r}")
    else:
        patients = [f"image:{p}" for p in paths]
        notes.append("no patient column: each image is its own patient (images of one patient may straddle splits)")
        log.warning("%s: no patient column; splitting by image. A patient's images may land in several "
                    "splits; set data.patient_column if the CSV has one", csv_file)
    base = Path(images) if images else _resolve_base(paths, [csv_file.parent, csv_file.parent.parent])
    ds = Dataset("csv", base, chosen, paths, patients, np.array(targets, np.float32), str(csv_file), notes)
    return _check_files(ds, on_missing)


# ---------------------------------------------------------------------------------------------- dispatch


def detect_format(path: Path, csv_path: str = "") -> str:
    """Which reader a dataset needs, from its files."""
    target = Path(csv_path) if csv_path else path
    if target.is_file() and target.suffix.lower() == ".csv":
        with open(target, newline="", encoding="utf-8-sig") as f:
            header = [c.strip() for c in next(csv.reader(f), [])]
        if "Image Index" in header and "Finding Labels" in header:
            return "nih14"
        if "finding" in header and "patient_id" in header:
            return "kermany"
        if "Path" in header and any(c in header for c in CHEXPERT_OBSERVATIONS):
            return "chexpert"
        return "csv"
    if path.is_dir():
        if find_nih_csv(path):
            return "nih14"
        if (path / "labels.csv").is_file():
            return detect_format(path, str(path / "labels.csv"))
        if (path / "NORMAL").is_dir() or (path / "PNEUMONIA").is_dir():
            return "kermany"
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) == 1:
            return detect_format(path, str(csvs[0]))
        raise DataError(f"{path}: cannot tell the dataset format (no labels.csv, Data_Entry_2017*.csv, "
                        "NORMAL/PNEUMONIA folders or single CSV); set data.format and data.csv")
    raise DataError(f"{path}: data path not found")


def open_dataset(opts: DataOptions) -> Dataset:
    """Read and check a dataset as a recipe's ``[data]`` table describes it."""
    if not opts.path and not opts.csv:
        raise DataError("no data path given (data.path)")
    path = Path(opts.path or Path(opts.csv).parent)
    if not path.exists():
        raise DataError(f"{path}: data path not found")
    fmt = opts.format
    if fmt not in FORMATS:
        raise DataError(f"data.format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        fmt = detect_format(path, opts.csv)
    csv_file = opts.csv or (str(path) if path.is_file() else "")
    if fmt == "kermany":
        root = path if path.is_dir() else path.parent
        return read_kermany(root, opts.on_missing, csv_file or None)
    if fmt == "nih14":
        return read_nih14(path if path.is_dir() else path.parent, opts.on_missing, csv_file or None,
                          opts.images or None)
    if not csv_file:
        if (path / "labels.csv").is_file():
            csv_file = str(path / "labels.csv")
        else:
            csvs = sorted(path.glob("*.csv"))
            if len(csvs) != 1:
                raise DataError(f"{path}: say which CSV to read (data.csv); found {[c.name for c in csvs]}")
            csv_file = str(csvs[0])
    images = opts.images or (str(path) if path.is_dir() else None)
    if fmt == "chexpert":
        return read_chexpert(csv_file, opts.images or None, opts.labels or None, opts.uncertain, opts.on_missing,
                             opts.patient_column)
    return read_csv_dataset(csv_file, images, opts.labels or None, opts.path_column, opts.patient_column,
                            opts.findings_column, opts.findings_separator, opts.uncertain, opts.on_missing)


# ---------------------------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Which images are in train / val / test; made by patient, saved beside the model."""

    indices: dict[str, np.ndarray]
    seed: int
    fractions: tuple[float, float, float]
    method: str = "patient-stratified"

    def counts(self, ds: Dataset) -> dict:
        return {name: {"images": int(len(idx)), "patients": len({ds.patients[i] for i in idx})}
                for name, idx in self.indices.items()}

    def describe(self, ds: Dataset) -> dict:
        return {"method": self.method, "seed": self.seed, "fractions": list(self.fractions),
                "counts": self.counts(ds), "label_digest": ds.label_digest()}

    def write(self, path: str | Path, ds: Dataset) -> str:
        """Write ``path,patient_id,split`` (CSV) and return its SHA-256."""
        where = {}
        for name, idx in self.indices.items():
            for i in idx:
                where[int(i)] = name
        rows = ["path,patient_id,split"]
        for i in sorted(where):
            rows.append(",".join(_csv_field(x) for x in (ds.paths[i], ds.patients[i], where[i])))
        text = "\n".join(rows) + "\n"
        atomic.write_text(path, text)
        return hashlib.sha256(text.encode()).hexdigest()


def _csv_field(x: str) -> str:
    return '"' + x.replace('"', '""') + '"' if any(c in x for c in ',"\n') else x


def split_by_patient(ds: Dataset, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Assign whole patients to train / val / test, stratified by each patient's label signature.

    Patients are sorted by (label signature, seeded random key), then dealt out systematically so each
    split's share of patients tracks ``fractions`` along that order: every signature group is spread
    over the splits in proportion. Deterministic for a given listing and seed.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or fr.sum() <= 0:
        raise DataError(f"split fractions must be three non-negative numbers (train, val, test), got {fractions}")
    fr = fr / fr.sum()
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(ds.patients):
        by_patient.setdefault(p, []).append(i)
    names = sorted(by_patient)
    rng = np.random.default_rng(seed)
    keys = rng.permutation(len(names))
    tg = np.nan_to_num(ds.targets, nan=0.0) > 0
    sig = {p: "".join("1" if tg[by_patient[p]][:, j].any() else "0" for j in range(len(ds.labels))) for p in names}
    order = sorted(range(len(names)), key=lambda k: (sig[names[k]], keys[k]))
    counts = np.zeros(3)
    assigned: dict[str, list[int]] = {s: [] for s in SPLITS}
    for k, pos in enumerate(order, start=1):
        deficit = fr * k - counts
        s = int(np.argmax(deficit))
        counts[s] += 1
        assigned[SPLITS[s]].extend(by_patient[names[pos]])
    return Split({s: np.array(sorted(v), dtype=np.int64) for s, v in assigned.items()}, seed,
                 tuple(float(x) for x in fractions))


def read_split(path: str | Path, ds: Dataset) -> Split:
    """A split written by :meth:`Split.write`, mapped onto ``ds`` (paths not in ``ds`` are an error)."""
    path = Path(path)
    columns, rows = _read_csv(path)
    _require_columns(path, columns, ["path", "split"], "a split file")
    pos = {p: i for i, p in enumerate(ds.paths)}
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    absent = []
    for r in rows:
        if r["split"] not in out:
            raise DataError(f"{path}: unknown split name {r['split']!r}")
        i = pos.get(r["path"])
        if i is None:
            absent.append(r["path"])
            continue
        out[r["split"]].append(i)
    if absent:
        raise DataError(f"{path}: {len(absent)} image(s) of the saved split are not in the data "
                        f"(e.g. {absent[:3]}); is this the dataset the model was trained on?")
    return Split({s: np.array(sorted(v), np.int64) for s, v in out.items()}, -1, (0.0, 0.0, 0.0), "file:" + path.name)


def limit_patients(ds: Dataset, max_images: int, seed: int) -> Dataset:
    """A seeded random subset of whole patients holding about ``max_images`` images (for quick runs)."""
    if max_images <= 0 or max_images >= len(ds):
        return ds
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(ds.patients):
        by_patient.setdefault(p, []).append(i)
    names = sorted(by_patient)
    keep: list[int] = []
    for k in np.random.default_rng([seed, 7]).permutation(len(names)):
        if len(keep) >= max_images:
            break
        keep.extend(by_patient[names[k]])
    sub = ds.subset(sorted(keep))
    sub.notes.append(f"limited to {len(sub)} of {len(ds)} images (whole patients, seed {seed})")
    return sub
