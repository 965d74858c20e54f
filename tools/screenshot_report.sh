#!/bin/sh
# Take a headless Chromium screenshot of an evaluation report, to look at it as a reader would.
#   tools/screenshot_report.sh report.html [out.png] [height]
# Needs Debian's chromium (apt-get install -y chromium). The browser runs with a fresh profile,
# no network services and no sandbox (containers run as root), and loads only the given file.
set -eu
report=$(realpath "$1")
out=${2:-${report%.html}.png}
height=${3:-9000}
browser=${CHROMIUM:-/usr/bin/chromium}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size="1100,$height" --screenshot="$out" "file://$report" >/dev/null 2>&1
echo "$out"
