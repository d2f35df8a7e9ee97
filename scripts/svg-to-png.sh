#!/usr/bin/env bash
# PNG copies of the SVG figures `mark simulate` writes (for chat tools and documents that do not
# take SVG), rendered by headless Chromium (Debian's `chromium`, as the operations page's browser
# test uses): every DIR/*.svg gets DIR/*.png at its own size, 2x for sharp text.
#   bash scripts/svg-to-png.sh sim-day
set -euo pipefail
DIR=${1:?usage: scripts/svg-to-png.sh DIR (a mark simulate --out directory)}
command -v chromium >/dev/null || { echo "chromium missing: apt-get install chromium" >&2; exit 69; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
n=0
for svg in "$DIR"/*.svg; do
  [ -e "$svg" ] || continue
  # the figure's own width and height (the simulator writes them on the <svg> element)
  read -r w h < <(python3 - "$svg" <<'PY'
import re, sys
head = open(sys.argv[1]).read(2000)
w = re.search(r'width="(\d+)', head); h = re.search(r'height="(\d+)', head)
print(w.group(1) if w else 900, h.group(1) if h else 600)
PY
)
  png="${svg%.svg}.png"
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --hide-scrollbars --force-device-scale-factor=2 --window-size="$w,$h" \
    --user-data-dir="$PROFILE" --screenshot="$png" "file://$(realpath "$svg")" >/dev/null 2>&1
  echo "$png (${w}x${h} at 2x)"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no .svg in $DIR" >&2; exit 64; }
