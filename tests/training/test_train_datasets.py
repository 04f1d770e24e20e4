"""Dataset readers and patient-level splits, on real images; every kind of bad input stops with a message."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrinspect.training.datasets import (KERMANY_LABELS, NIH14_LABELS, DataError, DataOptions, open_dataset,
                                          read_chexpert, read_csv_dataset, read_kermany, read_nih14, read_split,
                                          split_by_patient)


def test_kermany_labels(mini):
    ds = read_kermany(mini)
    assert ds.labels == KERMANY_LABELS == ["Pneumonia", "Bacterial", "Viral"]
    assert len(ds) == 24 and len(set(ds.patients)) == 20
    by_path = dict(zip(ds.paths, ds.targets.tolist()))
    assert by_path["NORMAL/IM-0001-0001.png"] == [0, 0, 0]
    assert by_path["PNEUMONIA/person1000_bacteria_2931.png"] == [1, 1, 0]
    assert by_path["PNEUMONIA/person1000_virus_1681.png"] == [1, 0, 1]
    assert all(s[0] > 0 for s in ds.stamps)
    assert open_dataset(DataOptions(path=str(mini))).format == "kermany"  # auto-detected


def test_kermany_layout_without_labels_csv_reads_file_names(mini_copy):
    with_csv = read_kermany(mini_copy)
    (mini_copy / "labels.csv").unlink()
    without = read_kermany(mini_copy)
    assert without.notes and "file names" in without.notes[0]
    a = {p: (pid, tuple(t)) for p, pid, t in zip(with_csv.paths, with_csv.patients, with_csv.targets.tolist())}
    b = {p: (pid, tuple(t)) for p, pid, t in zip(without.paths, without.patients, without.targets.tolist())}
    assert a == b


def test_split_is_by_patient_deterministic_and_saved(mini, tmp_path):
    ds = read_kermany(mini)
    s = split_by_patient(ds, (0.6, 0.2, 0.2), seed=0)
    all_idx = np.concatenate(list(s.indices.values()))
    assert sorted(all_idx.tolist()) == list(range(len(ds)))  # every image exactly once
    patients = {name: {ds.patients[i] for i in idx} for name, idx in s.indices.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"]) \
        and not (patients["val"] & patients["test"])
    # the two-image patients stay together
    assert any(len([i for i in s.indices[n] if ds.patients[i] == "person1031"]) == 2 for n in s.indices)
    again = split_by_patient(ds, (0.6, 0.2, 0.2), seed=0)
    assert all(np.array_equal(s.indices[n], again.indices[n]) for n in s.indices)
    other = split_by_patient(ds, (0.6, 0.2, 0.2), seed=1)
    assert any(not np.array_equal(s.indices[n], other.indices[n]) for n in s.indices)
    # stratified: each split of val/test holds normal and pneumonia patients
    for n in ("val", "test"):
        assert set(ds.targets[s.indices[n], 0].tolist()) == {0.0, 1.0}
    s.write(tmp_path / "split.csv", ds)
    back = read_split(tmp_path / "split.csv", ds)
    assert all(np.array_equal(s.indices[n], back.indices[n]) for n in s.indices)


def test_missing_image_stops_or_is_skipped(mini_copy):
    (mini_copy / "NORMAL" / "IM-0001-0001.png").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) listed .* missing: .*IM-0001-0001.png.*on_missing"):
        read_kermany(mini_copy)
    ds = read_kermany(mini_copy, on_missing="skip")
    assert len(ds) == 23 and "NORMAL/IM-0001-0001.png" not in ds.paths


def test_unknown_finding_and_missing_columns(mini_copy):
    text = (mini_copy / "labels.csv").read_text()
    (mini_copy / "labels.csv").write_text(text.replace("person1005,bacteria", "person1005,fungal"))
    with pytest.raises(DataError, match=r"unknown finding 'fungal'"):
        read_kermany(mini_copy)
    (mini_copy / "labels.csv").write_text(text.replace("path,patient_id,finding", "path,patient,finding"))
    with pytest.raises(DataError, match=r"lacks column\(s\) \['patient_id'\]"):
        read_kermany(mini_copy)


def _nih_layout(mini, root, rows):
    """A small NIH-format dataset from real radiographs, images nested as in the full release."""
    (root / "images_001" / "images").mkdir(parents=True)
    srcs = sorted((mini / "PNEUMONIA").glob("*.png")) + sorted((mini / "NORMAL").glob("*.png"))
    with open(root / "Data_Entry_2017_v2020.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age"])
        for k, (name, labels, pid) in enumerate(rows):
            shutil.copy(srcs[k], root / "images_001" / "images" / name)
            w.writerow([name, labels, 0, pid, 50])


def test_nih14_reader(mini, tmp_path):
    rows = [("00000001_000.png", "Atelectasis|Effusion", 1), ("00000001_001.png", "No Finding", 1),
            ("00000002_000.png", "Hernia", 2), ("00000003_000.png", "Pleural_Thickening", 3)]
    _nih_layout(mini, tmp_path, rows)
    ds = read_nih14(tmp_path)
    assert ds.labels == NIH14_LABELS and NIH14_LABELS[0] == "Atelectasis" and NIH14_LABELS[-1] == "Hernia"
    assert ds.paths[0] == "images_001/images/00000001_000.png"
    assert ds.targets[0].tolist() == [1, 0, 1] + [0] * 11
    assert ds.targets[1].sum() == 0 and ds.targets[2, 13] == 1 and ds.targets[3, 12] == 1
    assert ds.patients == ["1", "1", "2", "3"]


def test_nih14_unknown_label(mini, tmp_path):
    _nih_layout(mini, tmp_path, [("00000001_000.png", "Atelectasis|Pneumonitis", 1)])
    with pytest.raises(DataError, match=r"line 2: unknown label\(s\) \['Pneumonitis'\]"):
        read_nih14(tmp_path)


def test_nih14_shared_sample(shared_data):
    ds = open_dataset(DataOptions(path=str(shared_data / "nih14-sample-64px")))
    assert ds.format == "nih14" and len(ds) == 1000 and ds.labels == NIH14_LABELS
    assert int(ds.targets[:, 0].sum()) == 95  # Atelectasis in the sample
    s = split_by_patient(ds, (0.7, 0.1, 0.2), 0)
    pats = [{ds.patients[i] for i in idx} for idx in s.indices.values()]
    assert not (pats[0] & pats[1]) and not (pats[0] & pats[2]) and not (pats[1] & pats[2])


def test_shared_kermany_names_match_labels_csv(shared_data, tmp_path):
    """The file-name reading of the Kermany layout reproduces the dataset's labels.csv exactly."""
    from cxrinspect.training.datasets import _kermany_from_names

    ds = read_kermany(shared_data / "kermany")
    paths, patients, findings = _kermany_from_names(shared_data / "kermany")
    inferred = dict(zip(paths, patients))
    assert len(paths) == len(ds) == 4913
    assert all(inferred[p] == pid for p, pid in zip(ds.paths, ds.patients))


def _chexpert(mini, tmp_path, values):
    root = tmp_path / "CheXpert-v1.0-small"
    rows = []
    srcs = sorted((mini / "NORMAL").glob("*.png"))
    for k, v in enumerate(values):
        rel = f"CheXpert-v1.0-small/train/patient{k // 2:05d}/study1/view{k % 2 + 1}_frontal.png"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(srcs[k], tmp_path / rel)
        rows.append([rel, "Frontal", *v])
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Path", "Frontal/Lateral", "No Finding", "Cardiomegaly", "Edema", "Pleural Effusion"])
        w.writerows(rows)
    return root / "train.csv"


def test_chexpert_uncertain_policies(mini, tmp_path):
    csv_file = _chexpert(mini, tmp_path, [["", "1.0", "-1.0", ""], ["1.0", "0.0", "", "-1.0"],
                                          ["", "-1.0", "1.0", "0.0"]])
    zeros = read_chexpert(csv_file)
    assert zeros.labels == ["Cardiomegaly", "Edema", "Pleural Effusion"]  # "No Finding" is not a label
    assert zeros.targets.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert zeros.patients == ["patient00000", "patient00000", "patient00001"]
    assert read_chexpert(csv_file, uncertain="ones").targets.tolist() == [[1, 1, 0], [0, 0, 1], [1, 1, 0]]
    ign = read_chexpert(csv_file, uncertain="ignore").targets
    assert np.isnan(ign[0, 1]) and np.isnan(ign[1, 2]) and np.isnan(ign[2, 0]) and ign[0, 0] == 1
    assert open_dataset(DataOptions(path=str(csv_file))).format == "chexpert"


def test_generic_csv_label_columns_and_findings_column(mini, tmp_path):
    for k, src in enumerate(sorted((mini / "NORMAL").glob("*.png"))[:4]):
        shutil.copy(src, tmp_path / f"img{k}.png")
    (tmp_path / "cols.csv").write_text("path,patient_id,Opacity,Effusion\nimg0.png,a,1,0\nimg1.png,a,0,1\n"
                                       "img2.png,b,,1\nimg3.png,c,0,0\n")
    ds = read_csv_dataset(tmp_path / "cols.csv")
    assert ds.labels == ["Opacity", "Effusion"] and ds.targets.tolist() == [[1, 0], [0, 1], [0, 1], [0, 0]]
    assert ds.patients == ["a", "a", "b", "c"]
    (tmp_path / "find.csv").write_text("filename,findings\nimg0.png,Opacity|Effusion\nimg1.png,No Finding\n"
                                       "img2.png,Effusion\nimg3.png,\n")
    ds = read_csv_dataset(tmp_path / "find.csv", findings_column="findings")
    assert ds.labels == ["Effusion", "Opacity"] and ds.targets.tolist() == [[1, 1], [0, 0], [1, 0], [0, 0]]
    assert "each image is its own patient" in ds.notes[0]
    with pytest.raises(DataError, match=r"line 2: unknown label\(s\) \['Effusion'\]"):
        read_csv_dataset(tmp_path / "find.csv", findings_column="findings", labels=["Opacity"])
    (tmp_path / "bad.csv").write_text("path,patient_id,Opacity\nimg0.png,a,maybe\n")
    with pytest.raises(DataError, match=r"line 2, column 'Opacity': label value 'maybe'"):
        read_csv_dataset(tmp_path / "bad.csv", labels=["Opacity"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['Mass'\]"):
        read_csv_dataset(tmp_path / "cols.csv", labels=["Mass"])


def test_unreadable_image_is_skipped_and_counted(mini_copy, tiny_recipe, tmp_path):
    """A corrupt file is left out with a logged reason and a count; 'error' (or too many) stops the run."""
    from cxrinspect.training.loop import prepare

    Image.new("L", (4, 4)).save(mini_copy / "NORMAL" / "IM-0001-0001.png")  # valid, then truncated
    (mini_copy / "NORMAL" / "IM-0001-0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    run = tmp_path / "run"
    run.mkdir()
    recipe = tiny_recipe(f"data.path={mini_copy}", "data.max_unreadable_fraction=0.1")
    p = prepare(recipe, run, resume=False, progress=False)
    assert len(p.skipped) == 1 and "IM-0001-0001.png" in next(iter(p.skipped.values()))
    assert "IM-0001-0001.png" in (run / "skipped.csv").read_text()
    assert all(p.ds.paths[i] != "NORMAL/IM-0001-0001.png" for i in p.items)
    with pytest.raises(DataError, match=r"1 unreadable image\(s\), e.g. .*IM-0001-0001.png"):
        prepare(tiny_recipe(f"data.path={mini_copy}", "data.on_unreadable=\"error\""), run, False, False)
    with pytest.raises(DataError, match=r"more than data.max_unreadable_fraction"):
        prepare(tiny_recipe(f"data.path={mini_copy}"), run, False, False)  # default 1% < 1 of 24


def test_empty_split_is_an_error_before_training(tiny_recipe, tmp_path):
    from cxrinspect.training.loop import prepare

    with pytest.raises(DataError, match=r"the val split is empty|val share"):
        prepare(tiny_recipe("data.split=[0.98, 0.01, 0.01]"), tmp_path, False, False)
