"""Activation clustering and spectral signatures again, as `bench/scan_detection.py` computes them now, on the
folders a finished bench run left in its --work folder (its `images-RATE` folders): for a bench run made before
the baselines' classes included the images with no label positive (the class a "reads normal" backdoor forces).

    nice -n 5 .venv/bin/python bench/probes/baselines.py bench/zoo/zoo-normal /tmp/bench-normal
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import (activation_clustering, features_and_cams, forced, quality,  # noqa: E402
                            spectral_signatures, test_paths, views_of)

from cxrinspect.audit.run import probabilities  # noqa: E402
from cxrinspect.model import load as load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("work")
    a = ap.parse_args()
    model = load_model(a.model)
    spec = model.card.preprocessing
    paths, _ = test_paths(model)
    p_without = probabilities(model.network, views_of(paths, spec), spec)
    for folder in sorted(Path(a.work).glob("images-0.*")):
        files = sorted(str(f) for f in folder.iterdir())
        triggered = np.array(["/triggered/" in os.path.realpath(f) for f in files])
        feats, probs, _ = features_and_cams(model.network, views_of(files, spec), spec)
        fired = triggered & forced(model.card, probs, p_without)
        keep = ~triggered | fired
        for name, score in (("activation clustering", activation_clustering(feats, probs)),
                            ("spectral signatures", spectral_signatures(feats, probs))):
            print(f"{model.card.name} {folder.name}: {name}: all triggered {quality(triggered, score)}, "
                  f"forced ({int(fired.sum())}) {quality(fired[keep], score[keep])}", flush=True)


if __name__ == "__main__":
    main()
