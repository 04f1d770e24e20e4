#!/usr/bin/env bash
# Open the app on FILE under a fresh Xvfb display, wait for the window, save a screenshot.
#   packaging/screenshot.sh OUT.png EXECUTABLE FILE [SECONDS]
# EXECUTABLE "--file-manager" opens FILE as a file manager's double-click does: `gio open` (GLib, what
# GNOME Files and most file managers call) asks shared-mime-info for the file's type and starts the
# installed desktop entry that declares it, with the file as %f.
set -euo pipefail
OUT="$1"; EXE="$2"; FILE="$3"; WAIT="${4:-60}"
DISPLAY_NUM=":$(( 90 + RANDOM % 100 ))"
Xvfb "$DISPLAY_NUM" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
APP=""
cleanup() { [ -n "$APP" ] && kill "$APP" 2>/dev/null || true; kill "$XVFB" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
export DISPLAY="$DISPLAY_NUM" QT_QPA_PLATFORM=xcb CXRINSPECT_SCREENSHOT="$OUT" CXRINSPECT_SCREENSHOT_AFTER="${SCREENSHOT_AFTER:-20}"
if [ "$EXE" = "--file-manager" ]; then
    echo "$FILE is $(gio info -a standard::content-type "$FILE" | sed -n 's/.*content-type: //p')"
    gio open "$FILE"  # returns once the app is started; the app quits after its screenshot
else
    "$EXE" "$FILE" &
    APP=$!
fi
for _ in $(seq "$WAIT"); do
    [ -s "$OUT" ] && break
    if [ -n "$APP" ] && ! kill -0 "$APP" 2>/dev/null; then echo "the app exited before its window was captured" >&2; exit 1; fi
    sleep 1
done
[ -s "$OUT" ] || { echo "no screenshot after ${WAIT} s" >&2; exit 1; }
echo "screenshot $OUT"
