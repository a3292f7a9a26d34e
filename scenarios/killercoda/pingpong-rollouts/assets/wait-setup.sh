#!/usr/bin/env bash
# Foreground: waits for the background setup (setup.sh), at most
# PINGPONG_SETUP_TIMEOUT seconds (default 300), then loads the settings in
# every new shell. Exits 1 with the reason when the setup failed or timed out.
set -euo pipefail
home="${HOME:-/root}"
timeout="${PINGPONG_SETUP_TIMEOUT:-300}"
echo "Preparing the workshop (cloning the repository) ..."
deadline=$((SECONDS + timeout))
while [ ! -f "$home/.pingpong-setup-done" ]; do
  if [ -f "$home/.pingpong-setup-failed" ]; then
    echo "The setup failed: $(cat "$home/.pingpong-setup-failed")" >&2
    echo "Its log: $home/pingpong-setup.log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "The setup did not finish within ${timeout} s (log: $home/pingpong-setup.log)." >&2
    echo "Check PINGPONG_REPO and PINGPONG_REGISTRY in assets/pingpong-env.sh (placeholders are refused)." >&2
    exit 1
  fi
  sleep 1
done
grep -qF "source $home/pingpong-env.sh" "$home/.bashrc" 2>/dev/null \
  || echo "source $home/pingpong-env.sh" >>"$home/.bashrc"
echo "Ready: the repository is in $home/pingpong, the overlay in $home/pingpong-deploy."
