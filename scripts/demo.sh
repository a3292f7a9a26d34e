#!/usr/bin/env bash
# Runs the demo locally: a ponger of the given profile on :8080 and a pinger
# pinging it from :8081, until Ctrl-C.
#   scripts/demo.sh [initial|errors|slow|best]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-initial}"

# DEMO_PROFILE=dev uses a debug build (scripts/doc-blocks.py does, to reuse
# what scripts/test.sh built); release by default.
cargo_profile="${DEMO_PROFILE:-release}"
bin_dir="target/$([ "$cargo_profile" = dev ] && echo debug || echo "$cargo_profile")"
cargo build --profile "$cargo_profile" --locked -q -p ponger -p pinger
"./$bin_dir/ponger" --profile "$profile" --listen 127.0.0.1:8080 --drain-delay 0s &
ponger=$!
"./$bin_dir/pinger" --target http://127.0.0.1:8080/ping --listen 127.0.0.1:8081 &
pinger=$!
trap 'kill -TERM $pinger $ponger 2>/dev/null; wait' INT TERM EXIT

cat <<TXT >&2

ponger ($profile) on http://127.0.0.1:8080, pinger on http://127.0.0.1:8081. Try:
  curl -si http://127.0.0.1:8080/ping
  curl -s -H 'Accept: application/openmetrics-text' http://127.0.0.1:8080/metrics | grep '# {'
  curl -s http://127.0.0.1:8081/metrics | grep http_client_requests_total
Ctrl-C stops both.

TXT
wait
