"""The `cxrinspect` command: predict, render, scan and info from the command line (no Qt needed);
with no command, `cxrinspect [FOLDER]` opens the desktop app.

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

from . import __version__, atomic, resources

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C during a scan --ray: what finished is kept; --resume continues
RESOURCES = resources.root()
METHOD_CHOICES = ("gradient", "cam", "gradcam", "integrated-gradients", "smoothgrad", "occlusion")  # saliency.METHODS
SCAN_METHODS = ("auto", "gradient", "psc", "contrast", "mirror", "distill", "cam", "gradcam", "integrated-gradients",
                "smoothgrad", "occlusion")  # scan.detectors.METHODS (kept here so `--help` needs no torch)
SUSPICIOUS_DEFAULT = 0.02  # scan.SUSPICIOUS (kept here so `--help` needs no torch)


def default_model_path() -> Path:
    return resources.model_dir("kermany-densenet121-clean")


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
    from .model import CheckpointError

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
    if args.overlay:
        try:
            view = _overlay(rg, view, args)
        except ValueError as e:
            _error(str(e))
            return EXIT_USAGE
        except CheckpointError as e:
            _error(str(e))
            return EXIT_FATAL
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


def _overlay(rg, grey, args):
    """The saliency overlay as the viewer shows it: smoothed map, colour map, opacity, colour bar."""
    from .model import load as load_model
    from .saliency import explain
    from .saliency.overlay import blend, lut, shown_map, with_colour_bar

    if not 0.0 <= args.opacity <= 1.0:
        raise ValueError(f"--opacity must be in [0, 1], got {args.opacity}")
    lut(args.colour_map)  # an unknown colour map is a usage error before the model loads
    model = load_model(args.model)
    label = args.label
    if label is None:  # the most probable label
        from .inference import Predictor
        from .model import prepare

        probs = Predictor(model, device=args.device, backend="torch").probabilities(
            prepare(rg, model.card.preprocessing)[None])[0]
        label = model.labels[int(probs.argmax())]
    smap = explain(model, rg, [label], args.overlay, device=args.device)[0]
    shown = blend(grey, shown_map(smap, args.overlay, model.card.preprocessing), args.opacity, args.colour_map)
    return with_colour_bar(shown, f"{args.overlay}\n{label}", args.colour_map)


# ---------------------------------------------------------------- scan
def cmd_scan(args) -> int:
    from tqdm import tqdm

    from .model import CheckpointError, load
    from .scan import ScanError, scan

    try:
        model = load(args.model)
    except CheckpointError as e:
        _error(str(e))
        return EXIT_FATAL
    bar = tqdm(unit="img", file=sys.stderr, disable=args.quiet or None)

    def progress(done, total, record):
        bar.total = total
        bar.update(1)
        if not record.ok:
            bar.write(f"cxrinspect: failed {record.error}", file=sys.stderr)

    try:
        if args.ray is not None:
            result = _scan_on_ray(args)
            if result is None:
                return EXIT_INTERRUPTED
        else:
            result = scan(args.paths, model, args.out, method=args.method, label=args.label,
                          batch_size=args.batch_size, device=args.device, resume=args.resume,
                          verify_top=args.verify_top, threshold=args.threshold, progress=progress)
    except ScanError as e:
        _error(str(e))
        return EXIT_FATAL
    except ValueError as e:
        _error(str(e))
        return EXIT_USAGE
    except OSError as e:
        _error(f"cannot write to {args.out}: {e}")
        return EXIT_FATAL
    finally:
        bar.close()
    from .scan.run import flagged

    s = sum(bool((r.verification or {}).get("collapsed")) for r in result.ranked)
    print(f"cxrinspect: {len(result.ranked)} scanned, {len(result.errors)} unreadable; "
          f"{sum(flagged(r, args.threshold) for r in result.ranked)} flagged, {s} collapse when what the detectors "
          "found is hidden", file=sys.stderr)
    for h in result.hotspots[:3]:
        print(f"cxrinspect: recurring hotspot at y={h['centre'][0]:.3f}, x={h['centre'][1]:.3f}: {h['top_count']} of "
              f"the top {h['top_k']}, {h['all_count']} of all {h['all_images']}; {h['collapsed']} of the {h['verified']} "
              f"checked there collapse when masked", file=sys.stderr)
    for r in result.ranked[:5]:
        print(f"  #{r.rank} {r.score:.3f} {r.verdict:<10} {r.path}", file=sys.stderr)
    if result.verdict:
        print(f"cxrinspect: {result.verdict['sentence']}", file=sys.stderr)
    print(f"cxrinspect: report {result.files.get('html')}", file=sys.stderr)
    return EXIT_SOME_FAILED if result.errors else EXIT_OK


def _scan_on_ray(args):
    """``scan --ray``: the same scan on a Ray cluster (:mod:`cxrinspect.scan.cluster`); None after Ctrl-C."""
    from .scan import cluster

    try:
        return cluster.scan(args.paths, args.model, args.out, address=args.ray or None, workers=args.workers,
                            method=args.method, label=args.label, batch_size=args.batch_size, resume=args.resume,
                            verify_top=args.verify_top, threshold=args.threshold,
                            progress=None if args.quiet else cluster.progress_printer())
    except KeyboardInterrupt:
        print(f"\ncxrinspect: interrupted; the finished images are in {args.out}/parts: continue with --resume",
              file=sys.stderr)
        return None
    finally:
        if not args.quiet:
            print(file=sys.stderr)


# ---------------------------------------------------------------- audit
def cmd_audit(args) -> int:
    from tqdm import tqdm

    from .audit import AuditError, audit
    from .audit.inversion import GLOBAL_STEPS, WARP_STEPS
    from .audit.run import BUDGET, describe_progress
    from .audit.report import caveats, finder_name, forced_phrase
    from .model import CheckpointError, load

    try:
        model = load(args.model)
    except CheckpointError as e:
        _error(str(e))
        return EXIT_FATAL
    bar = tqdm(unit="step", file=sys.stderr, disable=args.quiet or None)

    def progress(done, total, info):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(describe_progress(done, total, info))
        bar.refresh()

    directions = ("on", "off") if args.off else ("on",)
    try:
        result = audit(args.data, model, args.out, directions=directions, budget=args.budget or BUDGET,
                       batch_size=args.batch_size, resume=args.resume,
                       global_steps=GLOBAL_STEPS if args.global_steps is None else args.global_steps,
                       warp_steps=WARP_STEPS if args.warp_steps is None else args.warp_steps,
                       search=args.search, sweep=not args.no_sweep, progress=progress)
    except AuditError as e:
        _error(str(e))
        return EXIT_FATAL
    except OSError as e:
        _error(f"cannot write to {args.out}: {e}")
        return EXIT_FATAL
    finally:
        bar.close()
    doc = result.doc
    for err in doc["errors"]:
        print(f"cxrinspect: failed {err['error']}", file=sys.stderr)
    for c in doc.get("candidates", []):
        print(f"  {c['candidate']:<20} mask {c['mask_l1'] if c['mask_l1'] is not None else '-':>8} px  held-out success "
              f"{c['heldout_success']}  index {c.get('anomaly_index')}  steps {c['steps']} ({c['stop']})"
              + (f"  square {c['square']['pattern_name']} {c['square']['size']}x{c['square']['size']} at "
                 f"{c['square']['top']},{c['square']['left']}"
                 if c.get("square") else ""), file=sys.stderr)
    t = doc.get("trigger") or {}
    where = f"trigger box {t.get('box')}" if t.get("box") is not None else "a trigger over the whole image"
    verdict = (f"BACKDOORED: {forced_phrase(doc)}; {where} (found by the {finder_name(t)})"
               if doc.get("backdoored") else "no backdoor found")
    print(f"cxrinspect: {verdict} ({doc['timing']['seconds']:.0f} s); report {result.files.get('html')}", file=sys.stderr)
    for caveat in caveats(doc) if doc.get("complete") else []:
        print(f"cxrinspect: {caveat}", file=sys.stderr)
    return EXIT_SOME_FAILED if doc["errors"] else EXIT_OK


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


# ---------------------------------------------------------------- self-test
def cmd_self_test(args) -> int:
    from .selftest import run

    return run()


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrinspect", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cxrinspect {__version__}")
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
    p.add_argument("--overlay", choices=METHOD_CHOICES, help="draw this saliency method's map over the image")
    p.add_argument("--label", help="label to explain (default: the most probable)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    p.add_argument("--colour-map", default="inferno", help="matplotlib colour map (default inferno)")
    p.add_argument("--model", default=str(default_model_path()), help="model for --overlay (default: bundled clean)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when present)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("scan", help="find backdoor-triggered images in folders: detect, rank, verify, give the folder "
                       "a verdict; report")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--model", default=str(default_model_path()), help="model to audit (default: bundled clean)")
    p.add_argument("--out", required=True, help="output folder: scan.jsonl, ranking.csv, report.json, report.html")
    p.add_argument("--method", default="gradient", choices=SCAN_METHODS,
                   help="gradient (default: 1 forward + 1 backward per image); auto: gradient-map compactness, "
                   "scaled-parameter, contrast and mirror consistency on every image, mask distillation on the "
                   "candidates; psc (IBD-PSC: 3 forwards), contrast (log-odds a positive label loses as the contrast "
                   "falls: 2 forwards), mirror (log-odds a positive label loses when the film is mirrored left-right: "
                   "1 forward), distill (mask distillation: 40 forwards + backwards) alone; or the "
                   "compactness of another saliency map")
    p.add_argument("--label", default="top", help="top (the most probable label: one backward), positive (every "
                   "label the model calls positive; the most compact map counts), all, or a label name")
    p.add_argument("--resume", action="store_true", help="continue a killed or cancelled scan in --out")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default 8 on the CPU, 32 on a GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when present)")
    p.add_argument("--threshold", type=float, default=SUSPICIOUS_DEFAULT,
                   help=f"flag images whose gradient-map score is above this (default {SUSPICIOUS_DEFAULT})")
    p.add_argument("--verify-top", type=int, default=20,
                   help="counterfactually check at least this many top images (default 20; all flagged ones and the "
                        "top 10%% of the folder too)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray (pip install 'cxrinspect[ray]'): ADDRESS as Ray takes it, auto, or none for a "
                   "cluster started here; PATH may also be a CSV/Parquet list of files")
    p.add_argument("--workers", type=int, default=None,
                   help="with --ray: model actors (default: one per GPU, else one per CPU)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("audit", help="is this model backdoored? invert triggers per label from clean images only")
    p.add_argument("--model", required=True, help="model directory or .safetensors file to audit")
    p.add_argument("--data", nargs="+", required=True, metavar="FOLDER", help="clean radiographs (files or folders)")
    p.add_argument("--out", required=True, help="output folder: audit.json, audit.html, trigger.json, state")
    p.add_argument("--off", action="store_true", help="also try to force each label off")
    p.add_argument("--budget", type=int, default=None, help="image passes (forward+backward) in all "
                   "(default: the audit's own budget, recorded in audit.json's settings)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--global-steps", type=int, default=None, help="steps of the whole-image inversion (for triggers "
                   "over the whole image: a sinusoid, a blended pattern) per label and family (default: the audit's "
                   "own, 25; 0: off)")
    p.add_argument("--warp-steps", type=int, default=None, help="steps per run of the warp inversion (for warping "
                   "triggers, WaNet) per label (default: the audit's own, 30; 0: off)")
    p.add_argument("--search", action="store_true", help="search the folder for images carrying the recovered trigger "
                   "(a recovered patch: the films whose target label collapses when its mask is hidden; a whole-image "
                   "change or warp is not searched for), listed in audit.json's 'search' and audit.html")
    p.add_argument("--no-sweep", action="store_true", help="skip the stamp sweep (black, white and checkerboard squares, about 2800 forwards) "
                   "and leave every candidate to the inversion")
    p.add_argument("--resume", action="store_true", help="continue a killed or cancelled audit in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_audit)

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

    p = sub.add_parser("self-test", help="check this installation: decode the bundled DICOMs, an onnxruntime and "
                       "a PyTorch forward, a saliency map, a 3-image scan; exit 1 naming a failed step")
    p.set_defaults(func=cmd_self_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`cxrinspect COMMAND ...` runs a command; `cxrinspect [FOLDER] [--model M]` opens the desktop app."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them only there
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        if argv and not argv[0].startswith("-") and not Path(argv[0]).exists():
            _error(f"{argv[0]!r} is neither a command ({', '.join(commands)}) nor a folder or file to open")
            return EXIT_USAGE
        from .gui.app import main as gui_main  # the only place the command line touches Qt

        return gui_main(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
