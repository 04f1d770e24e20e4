"""Regenerate tests/fixtures/kermany-mini from ../shared/data/kermany (run by hand; the fixture is committed).

24 real radiographs (8 normal, 8 bacterial, 8 viral) from 20 patients, some with two images and one
(person1000) with both a bacterial and a viral image, resized to 64x64 grey PNG, in the Kermany layout
(NORMAL/, PNEUMONIA/, labels.csv with path,patient_id,finding). Kermany et al., Cell 2018; data:
Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0.
"""

import csv
import sys
from pathlib import Path

from PIL import Image

PICK = {
    "normal": ["normal-IM-0435", "normal-IM-0001", "normal-IM-0003", "normal-IM-0005", "normal-IM-0006",
               "normal-IM-0007", "normal-IM-0009"],
    "bacteria": ["person1031", "person1000", "person1001", "person1002", "person1003", "person1005", "person1008"],
    "virus": ["person1019", "person1000", "person1007", "person1010", "person1016", "person1018", "person1020"],
}


def main(src: Path, dst: Path, per_class: int = 8) -> None:
    rows = list(csv.DictReader(open(src / "labels.csv")))
    out = []
    for finding, patients in PICK.items():
        chosen = []
        for pid in patients:
            chosen += [r for r in rows if r["patient_id"] == pid and r["finding"] == finding]
        if len(chosen) < per_class:
            raise SystemExit(f"only {len(chosen)} {finding} images among {patients}")
        out += chosen[:per_class]
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "patient_id", "finding"])
        for r in out:
            rel = Path(r["path"]).with_suffix(".png")
            (dst / rel.parent).mkdir(parents=True, exist_ok=True)
            with Image.open(src / r["path"]) as im:
                im.convert("L").resize((64, 64), Image.Resampling.LANCZOS).save(dst / rel, optimize=True)
            w.writerow([rel.as_posix(), r["patient_id"], r["finding"]])
    print(f"wrote {len(out)} images to {dst}")


if __name__ == "__main__":
    here = Path(__file__).resolve()
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[3] / "shared" / "data" / "kermany"
    main(src, here.parents[1] / "fixtures" / "kermany-mini")
