"""The `cxrinspect` command: predict, render and info from the command line (no Qt needed).

Exit codes:
  0  every file was read (and predicted)
  1  a fatal error: the model or an output could not be used
  2  bad command-line usage
  3  some input files could not be read; every good file was still processed and the failures
     are listed in the output with their reasons
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from . import atomic

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def default_model_path() -> Path:
    return RESOURCES / "models" / "kermany-densenet121-clean"


def _error(message: str) -> None:
    print(f"cxrinspect: error: {message}", file=sys.stderr)


# ---------------------------------------------------------------- predict
def cmd_predict(args) -> int:
    from tqdm import tqdm

    from .imaging import discover
    from .inference import Predictor
    from .model import CheckpointError

    out = Path(args.out) if args.out else None
    if out and out.suffix.lower() not in (".csv", ".jsonl"):
        _error(f"--out must end in .csv or .jsonl, got {out}")
        return EXIT_USAGE
    try:
        predictor = Predictor.open(args.model, device=args.device, batch_size=args.batch_size, backend=args.backend)
    except CheckpointError as e:
        _error(str(e))
        return EXIT_FATAL
    found = discover(args.paths)
    for path, reason in found.skipped:
        print(f"cxrinspect: skipped {path}: {reason}", file=sys.stderr)
    if not found.images:
        _error("no image files found in " + ", ".join(map(str, args.paths)))
        return EXIT_FATAL
    print(f"cxrinspect: {len(found.images)} file(s), model {predictor.card.name or args.model}, "
          f"{predictor.description}", file=sys.stderr)
    labels = predictor.labels
    # a path that does not exist or a folder that cannot be read is a failure too: a row, and exit 3
    rows = [{"path": path, "status": "error", "error": f"{path}: {reason}", "warnings": "",
             **{lab: None for lab in labels}} for path, reason in found.errors]
    bar = tqdm(total=len(found.images), unit="img", file=sys.stderr, disable=args.quiet or None)
    for p in predictor.predict_paths(found.images):
        rows.append({"path": p.path, "status": "ok" if p.ok else "error", "error": p.error or "",
                     "warnings": "; ".join(p.warnings),
                     **{lab: (round(float(v), 6) if p.ok else None) for lab, v in
                        zip(labels, p.probabilities if p.ok else [None] * len(labels))}})
        bar.update(1)
    bar.close()
    failed = sum(r["status"] == "error" for r in rows)

    text = io.StringIO()
    if out and out.suffix.lower() == ".jsonl":
        text.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        w = csv.DictWriter(text, fieldnames=["path", "status", "error", "warnings", *labels], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    if out:
        try:
            atomic.write_text(out, text.getvalue())
        except OSError as e:
            _error(f"cannot write {out}: {e}")
            return EXIT_FATAL
    else:
        sys.stdout.write(text.getvalue())
    for r in rows:
        if r["status"] == "error":
            print(f"cxrinspect: failed {r['error']}", file=sys.stderr)
    print(f"cxrinspect: {len(rows) - failed} predicted, {failed} failed" + (f", written to {out}" if out else ""),
          file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------- render
def cmd_render(args) -> int:
    from PIL import Image

    from .imaging import ImageReadError, Window, load, render

    try:
        rg = load(args.file)
        window = Window(*args.window) if args.window else None
    except ImageReadError as e:
        _error(str(e))
        return EXIT_SOME_FAILED
    except ValueError as e:
        _error(str(e))
        return EXIT_USAGE
    view = render(rg, window, args.invert)
    out = Path(args.out)
    try:
        atomic.replace(out, lambda tmp: Image.fromarray(view).save(tmp, format="PNG"))
    except OSError as e:
        _error(f"cannot write {out}: {e}")
        return EXIT_FATAL
    for w in rg.warnings:
        print(f"cxrinspect: {rg.path}: {w}", file=sys.stderr)
    print(f"cxrinspect: wrote {out} ({view.shape[1]}x{view.shape[0]})", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- info
def cmd_info(args) -> int:
    from .imaging import ImageReadError, load

    try:
        rg = load(args.file)
    except ImageReadError as e:
        _error(str(e))
        return EXIT_SOME_FAILED
    info = {"file": rg.path, **rg.metadata, "stored_range": f"{float(rg.pixels.min()):g}..{float(rg.pixels.max()):g}",
            "display_inverted": rg.inverted}
    if rg.pixel_spacing:
        info["pixel_spacing_mm"] = f"{rg.pixel_spacing[0]:g} x {rg.pixel_spacing[1]:g}"
    if args.show_phi:
        info["identity"] = rg.identity or "none recorded"
    elif rg.identity:
        info["identity"] = f"hidden ({len(rg.identity)} field(s); --show-phi reveals them)"
    if rg.warnings:
        info["warnings"] = rg.warnings
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items())
            elif isinstance(v, list):
                v = "; ".join(v)
            print(f"{k:<{width}}  {v}")
    return EXIT_OK


# ---------------------------------------------------------------- import
def cmd_import(args) -> int:
    from .model import CheckpointError, import_chexnet, import_torchxrayvision

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    importer = {"chexnet": import_chexnet, "torchxrayvision": import_torchxrayvision}[args.kind]
    try:
        model = importer(args.file, labels=labels, out=args.out)
    except CheckpointError as e:
        _error(str(e))
        return EXIT_FATAL
    print(f"cxrinspect: imported {model.card.name}: {len(model.labels)} labels -> {args.out}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrinspect", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("predict", help="per-label probabilities for files and folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--model", default=str(default_model_path()), help="model directory or .safetensors file "
                   "(default: the bundled clean model)")
    p.add_argument("--out", help="write results to FILE.csv or FILE.jsonl (default: CSV on stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"],
                   help="auto: onnxruntime on CPU, PyTorch on CUDA")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("render", help="write the image as the viewer shows it")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"), help="override the default window")
    p.add_argument("--invert", action="store_true", help="invert on top of the file's own presentation")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("info", help="what the file is (patient identity hidden unless --show-phi)")
    p.add_argument("file")
    p.add_argument("--show-phi", action="store_true", help="also print patient identity fields")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("import", help="convert weights trained elsewhere into a self-describing model")
    p.add_argument("kind", choices=["chexnet", "torchxrayvision"])
    p.add_argument("file", help="a state dict (.pt/.pth, read weights-only) or a .safetensors file")
    p.add_argument("--out", required=True, help="model directory (or .safetensors file) to write")
    p.add_argument("--labels", help="comma-separated label names in output order (default: the importer's)")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
