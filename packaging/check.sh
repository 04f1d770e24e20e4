#!/usr/bin/env bash
# make package-check: prove the frozen build works as a user gets it.
#   packaging/check.sh dist/cxrinspect dist/cxrinspect-<version>-linux-x86_64.tar.gz
# Runs the frozen self-test, predict, render and scan on the bundled samples; installs the tarball into
# a throwaway HOME and uninstalls it again (nothing left behind); validates the desktop entry and the
# metainfo; opens the frozen window under Xvfb on a DICOM file and saves a screenshot
# (build/package-check/screenshot.png). Fails on the first step that fails, naming it.
set -euo pipefail
BUNDLE="$(cd "$1" && pwd)"; TARBALL="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/build/package-check"
rm -rf "$OUT"; mkdir -p "$OUT"
export CXRINSPECT_CACHE="$OUT/cache" MPLBACKEND=Agg
EXE="$BUNDLE/cxrinspect"
SAMPLES="$BUNDLE/_internal/resources/samples"
START=$(date +%s)
step() { echo; echo "== package-check: $1 ($(( $(date +%s) - START )) s)"; }
fail() { echo "package-check FAILED: $1" >&2; exit 1; }

step "version"
"$EXE" --version | grep -q "^cxrinspect " || fail "--version"
"$BUNDLE/cxrinspect-train" --help >/dev/null || fail "cxrinspect-train --help (the argv[0] link)"

step "frozen self-test"
"$EXE" self-test || fail "self-test"

step "predict"
"$EXE" predict "$SAMPLES" --out "$OUT/predictions.csv" --quiet || fail "predict"
[ "$(tail -n +2 "$OUT/predictions.csv" | grep -c ',ok,')" -eq "$(ls "$SAMPLES" | grep -vc README)" ] || fail "predict: not every sample predicted"

step "render"
"$EXE" render "$SAMPLES/cr-chest-pa-monochrome1-j2k.dcm" --out "$OUT/render.png" || fail "render"
"$EXE" render "$SAMPLES/cr-chest-jpeg-baseline.dcm" --overlay gradient --out "$OUT/render-overlay.png" || fail "render --overlay"

step "scan"
"$EXE" scan "$SAMPLES" --out "$OUT/scan" --quiet --verify-top 3 || fail "scan"
[ -s "$OUT/scan/report.html" ] || fail "scan: no report.html"

step "install the tarball into a throwaway HOME"
export HOME_BEFORE="$HOME"
TH="$OUT/home"; mkdir -p "$TH"
(cd "$OUT" && tar -xzf "$TARBALL")
UNPACKED="$(ls -d "$OUT"/cxrinspect-*/)"
HOME="$TH" XDG_DATA_HOME= "$UNPACKED/install.sh" || fail "install.sh"
[ -x "$TH/.local/bin/cxrinspect" ] || fail "install.sh: no ~/.local/bin/cxrinspect"
HOME="$TH" "$TH/.local/bin/cxrinspect" --version || fail "installed cxrinspect --version"
DESKTOP="$TH/.local/share/applications/cxrinspect.desktop"
META="$TH/.local/share/metainfo/io.github.cxrinspect.metainfo.xml"

step "desktop-file-validate and appstreamcli"
desktop-file-validate "$DESKTOP" || fail "desktop-file-validate"
grep -q '^MimeType=application/dicom;' "$DESKTOP" || fail "desktop entry: no application/dicom"
appstreamcli validate --no-net "$META" || fail "appstreamcli validate"

step "double-click a DICOM file: the installed app opens on it under Xvfb"
DCM="$OUT/from the file manager/cr-chest-pa-monochrome1-j2k.dcm"  # a folder of its own, with a space
mkdir -p "$(dirname "$DCM")"; cp "$SAMPLES/cr-chest-pa-monochrome1-j2k.dcm" "$SAMPLES/cr-chest-jpeg-baseline.dcm" "$(dirname "$DCM")/"
HANDLER="$(HOME="$TH" XDG_DATA_HOME= gio mime application/dicom)"  # whole, not piped: pipefail and an early exit
[[ "$(head -1 <<< "$HANDLER")" == *cxrinspect.desktop* ]] \
    || fail "the installed desktop entry is not the default for application/dicom: $HANDLER"
HOME="$TH" XDG_DATA_HOME= XDG_CONFIG_HOME="$TH/.config" SCREENSHOT_AFTER="${SCREENSHOT_AFTER:-60}" \
    "$ROOT/packaging/screenshot.sh" "$OUT/screenshot.png" --file-manager "$DCM" 300 || fail "double-click under Xvfb"

step "uninstall leaves nothing behind"
HOME="$TH" XDG_DATA_HOME= "$UNPACKED/install.sh" --uninstall || fail "install.sh --uninstall"
LEFT="$(find "$TH" -mindepth 1 -not -path "$TH/.cache*" -not -path "$TH/.config*" | head -5)"
[ -z "$LEFT" ] || fail "uninstall left: $LEFT"

echo; echo "package-check passed in $(( $(date +%s) - START )) s; screenshot $OUT/screenshot.png"
