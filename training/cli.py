"""``cxrinspect-train``: train, evaluate, poison, export-onnx.

    cxrinspect-train train --recipe training/recipes/kermany-clean.toml [--set train.epochs=8 ...] [--out runs/x] [--resume]
    cxrinspect-train evaluate --model runs/x/model [--data DIR] [--split test] [--out metrics.json]
    cxrinspect-train poison --data DIR --out DIR [--preset kermany-badnets] [--rate 0.1] [--mode replace]
    cxrinspect-train export-onnx --model runs/x/model [--out model.onnx] [--images a.png b.png ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("cxrinspect.training")


def _data_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data", required=required, help="dataset folder (or its label CSV)")
    p.add_argument("--format", default="auto", help="auto | kermany | nih14 | chexpert | csv")
    p.add_argument("--csv", default="", help="label CSV, when it cannot be inferred")
    p.add_argument("--images", dest="image_dir", default="", help="image folder, when not the CSV's folder")
    p.add_argument("--labels", default="", help="comma-separated label columns/names (csv, chexpert)")
    p.add_argument("--uncertain", default="zeros", help="CheXpert -1 labels: zeros | ones | ignore")
    p.add_argument("--on-missing", default="error", help="a listed image that is absent: error | skip")


def _open_data(a):
    from .datasets import DataOptions, open_dataset

    return open_dataset(DataOptions(format=a.format, path=a.data, csv=a.csv, images=a.image_dir,
                                    labels=[x.strip() for x in a.labels.split(",") if x.strip()],
                                    uncertain=a.uncertain, on_missing=a.on_missing))


def _target(text: str) -> dict[str, float]:
    """``Pneumonia=1,Viral=1,Bacterial=0`` (or a JSON object)."""
    text = text.strip()
    if text.startswith("{"):
        return {k: float(v) for k, v in json.loads(text).items()}
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--target: {part!r} is not LABEL=0/1")
        k, v = part.split("=", 1)
        out[k.strip()] = float(v)
    return out


def _trigger(text: str):
    from cxrinspect.trigger import PAPER_TRIGGER, Trigger

    if text in ("paper", "PAPER_TRIGGER"):
        return PAPER_TRIGGER
    try:
        return Trigger.from_dict(json.loads(text))
    except json.JSONDecodeError as e:
        raise ValueError(f"--trigger must be 'paper' or a JSON object of Trigger fields ({e})") from e


def cmd_train(a) -> int:
    from .loop import train_from_files

    if a.ddp:  # the same command in N processes under torchrun (training/distributed.py)
        from . import distributed

        return distributed.launch(a.ddp, _without(a.argv, ("--ddp", "--max-restarts")), a.max_restarts)

    model_dir = train_from_files(a.recipe, a.set or [], a.out, a.resume, progress=not a.quiet)
    print(model_dir)
    return 0


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` without ``options`` and their values (``--ddp 2`` or ``--ddp=2``)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
        elif tok in options:
            skip = True
        elif not tok.startswith(tuple(o + "=" for o in options)):
            out.append(tok)
    return out


def cmd_evaluate(a) -> int:
    import torch

    from cxrinspect.model import load

    from .evaluation import dataset_from_card, evaluate_network, split_indices, write_metrics

    model = load(a.model)
    ds = _open_data(a) if a.data else dataset_from_card(model)
    indices, how = split_indices(model, ds, a.split)
    log.info("evaluating %s on %d image(s) of %s (%s)", a.model, len(indices), ds.root, how)
    trigger = _trigger(a.trigger) if a.trigger else model.card.trigger
    target = _target(a.target) if a.target else model.card.target
    if trigger is not None and not target:
        raise ValueError("--trigger needs --target (the label vector the trigger should force)")
    out = Path(a.out) if a.out else Path(a.model if Path(a.model).is_dir() else Path(a.model).parent) / "evaluation" / "metrics.json"
    plots = Path(a.plots) if a.plots else out.parent
    device = "cuda" if torch.cuda.is_available() and not a.cpu else "cpu"
    metrics = evaluate_network(model.network.to(device), ds, indices, model.card.preprocessing, cache_dir=a.cache_dir,
                               trigger=trigger, target=target, workers=a.workers, batch_size=a.batch_size,
                               device=device, plots_dir=plots, progress=not a.quiet, labels=model.card.labels)
    metrics.update(split=a.split, split_source=how, model=str(a.model), data=str(ds.root))
    write_metrics(metrics, out)
    c = metrics["clean"]["auroc"]
    print(f"clean AUROC: macro {_f(c['macro'])}, micro {_f(c['micro'])}; "
          + ", ".join(f"{k} {_f(v)}" for k, v in c["per_label"].items()))
    if metrics["infected"]:
        print(f"infected AUROC (micro) {_f(metrics['infected']['auroc']['micro'])}; triggered, true labels: macro "
              f"{_f(metrics['triggered_true_labels']['auroc']['macro'])}; attack success @0.6 "
              f"{_f(metrics['attack_success']['0.6'])}, @0.9 {_f(metrics['attack_success']['0.9'])}")
    print(out)
    return 0


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def cmd_poison(a) -> int:
    from .poisoning import PoisonSpec, preset, write_poisoned_copy

    ds = _open_data(a)
    trigger = _trigger(a.trigger) if a.trigger else None
    target = _target(a.target) if a.target else None
    if a.preset:
        spec = preset(a.preset, rate=a.rate, mode=a.mode, trigger=trigger, target=target, seed=a.seed)
    else:
        if trigger is None or target is None or a.rate is None:
            raise ValueError("give --preset, or all of --trigger, --target and --rate")
        spec = PoisonSpec(trigger=trigger, target=target, rate=a.rate, mode=a.mode or "replace", seed=a.seed)
    from cxrinspect.model import Preprocessing

    geometry = Preprocessing(input_size=a.input_size, channels=1, crop_fraction=a.crop, mean=(0.5,), std=(0.25,))
    info = write_poisoned_copy(ds, a.out, spec, workers=a.workers, progress=not a.quiet, preprocessing=geometry)
    print(f"wrote {info['copy_images']} images to {a.out}: {info['poisoned_images']} poisoned "
          f"({spec.mode}, rate {spec.rate:g}); manifest {Path(a.out) / 'poison_manifest.csv'}")
    return 0


def cmd_sweep(a) -> int:
    from .sweep import sweep

    rates = [float(r) for r in a.rates.split(",") if r.strip()]
    table = sweep(a.recipe, rates, a.out, a.set or [], progress=not a.quiet)
    print((Path(a.out) / "sweep.md").read_text(), end="")
    return 0 if table["rates"] else 1


def cmd_export(a) -> int:
    from .loop import export_run

    model_dir = export_run(a.run, device=a.device, progress=not a.quiet)
    print(f"exported the best epoch of {a.run} to {model_dir} (card, weights, split, test metrics)")
    return 0


def cmd_export_onnx(a) -> int:
    import torch

    from cxrinspect.imaging import load as load_image
    from cxrinspect.model import load, preprocess
    from cxrinspect.model.onnx_export import export_onnx

    from .evaluation import dataset_from_card, split_indices

    model = load(a.model)
    paths = list(a.image or [])
    if not paths:
        try:
            ds = _open_data(a) if a.data else dataset_from_card(model)
            idx, _ = split_indices(model, ds, "test") if not a.data else (list(range(len(ds))), "")
            paths = [str(ds.file(int(i))) for i in list(idx)[: a.count]]
        except Exception as e:  # noqa: BLE001 - any failure here just means: no real images available
            raise ValueError(f"no real images to compare on ({e}); pass --image FILE ... or --data DIR") from e
    inputs = torch.stack([preprocess(load_image(p), model.card.preprocessing) for p in paths])
    out = Path(a.out) if a.out else (Path(a.model) / "model.onnx" if Path(a.model).is_dir()
                                     else Path(a.model).with_suffix(".onnx"))
    diff = export_onnx(model, out, inputs, opset=a.opset)
    print(f"{out}: onnx.checker passed; max |onnxruntime - PyTorch| = {diff:.3g} over {len(paths)} real image(s)")
    return 0 if diff < a.tolerance else 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cxrinspect-train", description="Train, poison, evaluate and export "
                                 "chest-radiograph DenseNet classifiers.")
    ap.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a recipe")
    p.add_argument("--recipe", help="TOML recipe (optional with --resume: the run's own)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value (repeatable)")
    p.add_argument("--out", help="run folder (default runs/<recipe name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--ddp", type=int, default=0, metavar="N",
                   help="DistributedDataParallel in N processes on this machine (gloo on CPU, nccl on GPUs); "
                   "or launch this command under torchrun")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="with --ddp: restart the workers this many times after one dies (they resume)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="AUROC (clean, infected, triggered) and attack success of a model")
    p.add_argument("--model", required=True)
    _data_args(p, required=False)
    p.add_argument("--split", default="test", help="train | val | test | all (default test)")
    p.add_argument("--out", help="metrics JSON (default MODEL/evaluation/metrics.json)")
    p.add_argument("--plots", help="folder for ROC PNGs (default: beside the metrics)")
    p.add_argument("--trigger", help="evaluate against this trigger: 'paper' or JSON (default: the card's)")
    p.add_argument("--target", help="target labels, e.g. Pneumonia=1,Viral=1,Bacterial=0 (default: the card's)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even with CUDA")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("poison", help="write a poisoned copy of a dataset (PNG + labels.csv + manifest)")
    _data_args(p, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", help="paper-nih14 | kermany-badnets")
    p.add_argument("--rate", type=float)
    p.add_argument("--mode", help="replace | append")
    p.add_argument("--trigger", help="'paper' or JSON of Trigger fields")
    p.add_argument("--target", help="e.g. Pneumonia=1,Viral=1,Bacterial=0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=224,
                   help="model input size an input-space trigger is defined at (default 224)")
    p.add_argument("--crop", type=float, default=1.0, help="the model's central crop fraction (default 1.0)")
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=cmd_poison)

    p = sub.add_parser("sweep", help="train a poisoned recipe at several poisoning rates and tabulate (the paper's table)")
    p.add_argument("--recipe", required=True)
    p.add_argument("--rates", default="0.01,0.05,0.1,0.2", help="comma-separated poisoning rates")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value (repeatable)")
    p.add_argument("--out", required=True, help="sweep folder (one run per rate inside; rerun to resume)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export", help="export the best epoch so far of a run (finished, killed or still going)")
    p.add_argument("--run", required=True, help="the run folder (--out of train)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-onnx", help="export to ONNX and compare onnxruntime with PyTorch")
    p.add_argument("--model", required=True)
    p.add_argument("--out", help="ONNX file (default MODEL/model.onnx)")
    p.add_argument("--image", nargs="+", help="real radiographs to compare on (default: the test split's first)")
    _data_args(p, required=False)
    p.add_argument("--count", type=int, default=8, help="how many images to compare on")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--tolerance", type=float, default=1e-4, help="exit 1 when the difference is larger")
    p.set_defaults(func=cmd_export_onnx)
    return ap


def main(argv: list[str] | None = None) -> int:
    from cxrinspect.imaging import ImageReadError
    from cxrinspect.model import CardError, CheckpointError

    from .checkpoint import ResumeError
    from .datasets import DataError
    from .loop import TrainingError
    from .recipe import RecipeError

    a = parser().parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # --quiet quietens the console, never a run's train.log
        handler.setLevel(logging.WARNING if a.quiet else logging.INFO)
    log.setLevel(logging.INFO)
    try:
        return a.func(a)
    except (DataError, RecipeError, TrainingError, ResumeError, CheckpointError, CardError, ImageReadError,
            ValueError, FileNotFoundError) as e:
        print(f"cxrinspect-train {a.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxrinspect-train {a.command}: interrupted (a training run continues with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from .distributed import exit_worker

    code = main()
    exit_worker(code)  # a torchrun worker ends here, before the interpreter's teardown
    sys.exit(code)
