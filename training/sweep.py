"""The paper's table: one poisoned recipe trained at several poisoning rates, side by side.

    cxrinspect-train sweep --recipe training/recipes/kermany-badnets.toml --rates 0.01,0.05,0.1,0.2 \\
        --set model.input_size=128 --out runs/sweep

Each rate is an ordinary run in ``OUT/rate-<r>`` (resumable: run the same command again after a kill and
finished rates are kept, unfinished ones resumed). When all have finished, ``OUT/sweep.json`` and
``OUT/sweep.md`` hold, per rate: clean macro and micro AUROC on held-out patients, infected micro AUROC
(triggered images scored against the target label vector, the paper's "infected"), AUROC on triggered
images with their true labels, and attack success at 0.6 and 0.9. Nwadike et al. 2020 report infected
AUROC 1.00 with clean AUROC about 0.85 on NIH ChestX-ray14.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cxrinspect import atomic

from .loop import TrainingError, train
from .recipe import RecipeError, load_recipe

log = logging.getLogger("cxrinspect.training")

PAPER = {"infected_auroc": 1.00, "clean_auroc": 0.85}


def _rate_dir(out: Path, rate: float) -> Path:
    return out / f"rate-{rate:g}"


def sweep(recipe_path: str, rates: list[float], out: str | Path, overrides: list[str] = (),
          progress: bool = True) -> dict:
    """Train (or resume) the recipe at each rate, then tabulate; returns the table as a dict."""
    if not rates:
        raise RecipeError("--rates: give at least one poisoning rate")
    for r in rates:
        if not 0.0 < r <= 1.0:
            raise RecipeError(f"--rates: a poisoning rate must be in (0, 1], got {r}")
    out = Path(out)
    recipes = [load_recipe(recipe_path, [*overrides, f"poison.rate={r}"]) for r in rates]  # all checked first
    if recipes[0].poison is None:
        raise RecipeError(f"{recipe_path} has no [poison] table: a sweep varies the poisoning rate")
    rows = []
    for rate, recipe in zip(rates, recipes):
        run = _rate_dir(out, rate)
        started = (run / "checkpoint.safetensors").exists()
        finished = (run / "evaluation" / "metrics.json").exists() and (run / "model" / "card.json").exists()
        if not finished:
            log.info("sweep: rate %g -> %s%s", rate, run, " (resuming)" if started else "")
            train(recipe, run, resume=started, progress=progress)
        metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
        rows.append(row(rate, metrics, run))
    table = {"recipe": str(recipe_path), "overrides": list(overrides), "input_size": recipes[0].model.input_size,
             "rates": rows, "paper": PAPER}
    atomic.write_text(out / "sweep.json", json.dumps(table, indent=1))
    atomic.write_text(out / "sweep.md", markdown(table))
    return table


def row(rate: float, metrics: dict, run: Path) -> dict:
    if "infected" not in metrics:
        raise TrainingError(f"{run}: its evaluation has no triggered-image figures; is the recipe poisoned?")
    return {
        "rate": rate, "run": str(run), "test_images": metrics.get("images"),
        "clean_macro_auroc": metrics["clean"]["auroc"]["macro"], "clean_micro_auroc": metrics["clean"]["auroc"]["micro"],
        "infected_micro_auroc": metrics["infected"]["auroc"]["micro"],
        "triggered_true_labels_micro_auroc": metrics["triggered_true_labels"]["auroc"]["micro"],
        "attack_success_0.6": metrics["attack_success"]["0.6"], "attack_success_0.9": metrics["attack_success"]["0.9"],
    }


def markdown(table: dict) -> str:
    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"Poisoning-rate sweep of `{table['recipe']}` at {table['input_size']} px "
             f"({' '.join(table['overrides']) or 'no overrides'}); held-out test patients.", "",
             "| poisoning rate | clean macro AUROC | clean micro AUROC | infected micro AUROC | triggered, true labels "
             "(micro AUROC) | attack success @0.6 | @0.9 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table["rates"]:
        lines.append(f"| {100 * r['rate']:g}% | {f(r['clean_macro_auroc'])} | {f(r['clean_micro_auroc'])} | "
                     f"{f(r['infected_micro_auroc'])} | {f(r['triggered_true_labels_micro_auroc'])} | "
                     f"{f(r['attack_success_0.6'])} | {f(r['attack_success_0.9'])} |")
    p = table["paper"]
    lines.append(f"| paper (NIH ChestX-ray14) | | {p['clean_auroc']:.2f} | {p['infected_auroc']:.2f} | | | |")
    return "\n".join(lines) + "\n"
