"""Which psc score separates triggered from clean without saturating? Per image, per amplified copy, the
signed margin of each label's amplified logit over its threshold (positive = keeps the original decision)."""
import sys, os, glob
import numpy as np, torch
from sklearn.metrics import roc_auc_score
from cxrinspect.model import load as load_model
from cxrinspect.imaging import load
from cxrinspect.model.preprocess import model_view
from cxrinspect.scan import Scanner
torch.set_num_threads(1)
model_dir, folder = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(folder + "/*.png"))
truth = np.array(["triggered" in os.path.realpath(f) for f in files])
m = load_model(model_dir)
sc = Scanner(m, method="psc", device="cpu")
views = np.stack([model_view(load(f), m.card.preprocessing) for f in files])
rng = np.random.default_rng(0)
sc.calibrate(views[rng.choice(len(views), 32, replace=False)])
psc = sc.psc
M = np.concatenate([psc.margins(sc._input(views[s:s + 16])).numpy() for s in range(0, len(views), 16)])  # (N, copies, labels)
np.save(folder.rstrip("/") + "-margins.npy", M)
cands = {"current": (1/(1+np.exp(-M))).mean((1, 2)), "mean_margin": M.mean((1, 2)), "min_label_mean_copies": M.mean(1).min(1),
         "mean_clipped": np.clip(M, -20, 20).mean((1, 2)), "median": np.median(M, (1, 2)), "mean_tanh": np.tanh(M / 5).mean((1, 2))}
print(model_dir, folder, "start", psc.start, "triggered", truth.sum())
for k, v in cands.items():
    print(f"{k:24s} AUROC {roc_auc_score(truth, v) if truth.any() and not truth.all() else float('nan'):.4f}  clean q50/90/99 {np.round(np.quantile(v[~truth], [.5, .9, .99]), 3)}  trig q10/50 {np.round(np.quantile(v[truth], [.1, .5]), 3) if truth.any() else ''}")
