"""Does a trigger that is the same in every image (blended noise, SIG) leave the same high-pass residual in every
triggered image of a folder, so that triggered images find each other without the model? On the first N held-out
test images of a backdoored model (as the zoo bench writes them): a folder of the first N - k clean and the last k
triggered films (different patients), each image's residual after a Gaussian blur of sigma 1-8 model pixels, and
per image its k-th largest correlation with another image's residual, scored by AUROC and precision at k
(triggered vs clean). Model-free: no forward pass.

    .venv/bin/python bench/probes/shared_residual.py bench/zoo/zoo-blend --images 150
"""
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_detection import probe_views  # noqa: E402



def main() -> None:
    model, clean, trig = probe_views("shared-residual-")
    n = len(clean)
    for k_t in (n // 10, max(2, n // 30)):
        folder = np.concatenate([clean[:n - k_t], trig[n - k_t:]])
        truth = np.r_[np.zeros(n - k_t), np.ones(k_t)]
        for sigma in (1, 2, 4, 8):
            r = (folder - np.stack([gaussian_filter(v, sigma) for v in folder])).reshape(n, -1)
            r -= r.mean(1, keepdims=True)
            r /= np.linalg.norm(r, axis=1, keepdims=True) + 1e-12
            c = r @ r.T
            np.fill_diagonal(c, -1.0)
            nearest = np.sort(c, 1)[:, ::-1]
            cells = []
            for k in (1, 2, 4):
                score = nearest[:, k - 1]
                top = np.argsort(-score)[:k_t]
                cells.append(f"k={k}: {roc_auc_score(truth, score):.3f} / {truth[top].mean():.2f}")
            print(f"{model.card.name}, {k_t} of {n} triggered, sigma {sigma}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
