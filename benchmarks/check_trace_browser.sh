#!/usr/bin/env bash
# Open a trace browser (traces.html) in headless Chromium and screenshot it before and after the disagreement
# filter (the page honours the URL hash #filter=disagree). Installs nothing but Debian's `chromium` package, and
# only when asked (INSTALL_CHROMIUM=1). Without a traces.html argument it first writes a small demo report
# (tiny random model, base vs a random LoRA adapter: seconds on CPU).
#
#   bash benchmarks/check_trace_browser.sh                        # demo report -> screenshots
#   bash benchmarks/check_trace_browser.sh runs/eval/traces.html  # your report
#   INSTALL_CHROMIUM=1 bash benchmarks/check_trace_browser.sh     # apt-get install -y chromium first
#
# Prints the screenshot paths and the visible-row counts the page reports (read from Chromium's DOM dump).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/trace_browser}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$OUT"

if [ ! -x "$CHROMIUM" ] && [ "${INSTALL_CHROMIUM:-0}" = "1" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "no $CHROMIUM: install Debian's chromium (INSTALL_CHROMIUM=1) or set CHROMIUM=/path/to/chromium" >&2
  exit 3
fi

HTML=${1:-}
if [ -z "$HTML" ]; then
  OMP_NUM_THREADS=1 "$PY" benchmarks/trace_browser_demo.py "$OUT/demo_report" --real
  HTML="$OUT/demo_report/traces.html"
fi
URL="file://$(realpath "$HTML")"

shot() {  # shot NAME HASH
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars \
    --window-size=1400,1000 --screenshot="$OUT/$1.png" "$URL$2" >/dev/null 2>&1
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --dump-dom "$URL$2" 2>/dev/null | grep -o '<span id="count">[^<]*' | sed 's/.*>/  visible: /'
  echo "  screenshot: $OUT/$1.png"
}

echo "trace browser: $HTML"
echo "before (all rows):"
shot traces_all "#filter=all"
echo "after (#filter=disagree):"
shot traces_disagree "#filter=disagree"
