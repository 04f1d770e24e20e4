#!/usr/bin/env bash
# Install cxrinspect for this user (no root): the app under ~/.local/lib/cxrinspect, the commands in
# ~/.local/bin, the desktop entry, metainfo and icons under ~/.local/share. Every file it writes is
# listed in a manifest, and `./install.sh --uninstall` removes exactly those files.
#   ./install.sh            install (or update) from the folder this script is in
#   ./install.sh --uninstall
set -euo pipefail
PREFIX="${PREFIX:-$HOME/.local}"
DATA="${XDG_DATA_HOME:-$PREFIX/share}"
APPDIR="$PREFIX/lib/cxrinspect"
MANIFEST="$APPDIR/install-manifest.txt"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

refresh() {  # the desktop's MIME and icon caches, for folders that (still) exist
    if [ -d "$DATA/applications" ] && command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$DATA/applications" || true
    fi
    if [ -d "$DATA/icons/hicolor" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
    fi
}

uninstall() {
    if [ ! -f "$MANIFEST" ]; then
        echo "cxrinspect: nothing to uninstall (no manifest at $MANIFEST)" >&2
        exit 1
    fi
    mapfile -t LINES < "$MANIFEST"
    # files and links first, then the folders the install created, deepest first (only when empty)
    for line in "${LINES[@]}"; do
        kind="${line%% *}"; path="${line#* }"
        if [ "$kind" = f ] || [ "$kind" = l ]; then rm -f -- "$path"; fi
    done
    rm -f -- "$MANIFEST"
    for line in "${LINES[@]}"; do if [ "${line%% *}" = d ]; then echo "${line#* }"; fi; done |
        awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- |
        while IFS= read -r dir; do
            # in a folder this install created, the caches refresh() wrote there are ours too
            rm -f -- "$dir/mimeinfo.cache" "$dir/icon-theme.cache"
            rmdir -- "$dir" 2>/dev/null || true
        done
    rm -f -- "$MANIFEST"
    rmdir -- "$APPDIR" 2>/dev/null || true
    refresh
    echo "cxrinspect: uninstalled"
}

if [ "${1:-}" = "--uninstall" ]; then uninstall; exit 0; fi
if [ $# -gt 0 ]; then echo "usage: $0 [--uninstall]" >&2; exit 2; fi
if [ ! -x "$HERE/cxrinspect/cxrinspect" ]; then
    echo "cxrinspect: $HERE/cxrinspect/cxrinspect not found: run install.sh from the unpacked tarball" >&2
    exit 1
fi
[ -f "$MANIFEST" ] && uninstall >/dev/null

mkdir_logged() {  # create each missing folder on the way and record it
    local d="$1" missing=()
    while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d="$(dirname "$d")"; done
    for d in "${missing[@]}"; do mkdir -- "$d"; NEW_DIRS+=("$d"); done
}
NEW_DIRS=()
mkdir_logged "$APPDIR"
mkdir_logged "$PREFIX/bin"
mkdir_logged "$DATA/applications"
mkdir_logged "$DATA/metainfo"
for size in 16 32 48 64 128 256 512; do mkdir_logged "$DATA/icons/hicolor/${size}x${size}/apps"; done
mkdir_logged "$DATA/icons/hicolor/scalable/apps"

TMPLIST="$(mktemp)"
trap 'rm -f "$TMPLIST"' EXIT
for d in "${NEW_DIRS[@]}"; do echo "d $d" >> "$TMPLIST"; done

# the app: copy the bundle, then list every folder and file in it
cp -a "$HERE/cxrinspect/." "$APPDIR/"
(cd "$HERE/cxrinspect" && find . -mindepth 1 -type d | sed "s|^\.|d $APPDIR|") >> "$TMPLIST"
(cd "$HERE/cxrinspect" && find . \( -type f -o -type l \) | sed "s|^\.|f $APPDIR|") >> "$TMPLIST"

link() { ln -sfn "$1" "$2"; echo "l $2" >> "$TMPLIST"; }
put() { install -m 644 "$1" "$2"; echo "f $2" >> "$TMPLIST"; }
link "$APPDIR/cxrinspect" "$PREFIX/bin/cxrinspect"
link "$APPDIR/cxrinspect-train" "$PREFIX/bin/cxrinspect-train"
sed "s|^Exec=cxrinspect|Exec=$APPDIR/cxrinspect|" "$HERE/share/cxrinspect.desktop" > "$DATA/applications/cxrinspect.desktop"
echo "f $DATA/applications/cxrinspect.desktop" >> "$TMPLIST"
put "$HERE/share/io.github.cxrinspect.metainfo.xml" "$DATA/metainfo/io.github.cxrinspect.metainfo.xml"
for size in 16 32 48 64 128 256 512; do
    put "$HERE/cxrinspect/_internal/resources/icons/cxrinspect-$size.png" "$DATA/icons/hicolor/${size}x${size}/apps/cxrinspect.png"
done
put "$HERE/cxrinspect/_internal/resources/icons/cxrinspect.svg" "$DATA/icons/hicolor/scalable/apps/cxrinspect.svg"
mv -- "$TMPLIST" "$MANIFEST.tmp" && mv -- "$MANIFEST.tmp" "$MANIFEST"
trap - EXIT
refresh
echo "cxrinspect: installed to $APPDIR ($(wc -l < "$MANIFEST") entries in $MANIFEST)"
echo "cxrinspect: run 'cxrinspect' (in $PREFIX/bin) or open a DICOM file from the file manager"
