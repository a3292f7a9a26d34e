#!/usr/bin/env bash
# Background setup, run by Killercoda when the scenario starts: clones the
# repository and writes an overlay of the canary that takes the images from
# the workshop's registry. Writes $HOME/pingpong-setup.log, then either
# $HOME/.pingpong-setup-done or $HOME/.pingpong-setup-failed (with the
# reason), which wait-setup.sh (the foreground) reports.
set -euo pipefail
home="${HOME:-/root}"
log="$home/pingpong-setup.log"
done_marker="$home/.pingpong-setup-done"
failed_marker="$home/.pingpong-setup-failed"
rm -f "$done_marker" "$failed_marker"
exec >>"$log" 2>&1

fail() {
  echo "$1" | tee "$failed_marker"
  exit 1
}
trap 'fail "setup.sh failed at line $LINENO (see $log)"' ERR

# shellcheck source=pingpong-env.sh
source "$home/pingpong-env.sh"

case "$PINGPONG_REPO" in
  *CHANGE-ME*) fail "PINGPONG_REPO is still the placeholder $PINGPONG_REPO: set it in assets/pingpong-env.sh to the workshop's repository" ;;
esac
[ -n "$PINGPONG_REGISTRY" ] || fail "PINGPONG_REGISTRY is empty and cannot be derived from PINGPONG_REPO=$PINGPONG_REPO: set it in assets/pingpong-env.sh (e.g. ghcr.io/<owner>/)"

# A clone that hangs (network, credentials prompt) must not hold the workshop.
if ! GIT_TERMINAL_PROMPT=0 timeout 300 git clone --quiet --depth 1 --branch "$PINGPONG_REF" \
  "$PINGPONG_REPO" "$home/pingpong"; then
  fail "cannot clone $PINGPONG_REPO (ref $PINGPONG_REF) within 300 s: check PINGPONG_REPO and PINGPONG_REF in assets/pingpong-env.sh"
fi

# kustomize refuses absolute paths in resources: the overlay names the
# repository's canary overlay relative to itself.
mkdir -p "$home/pingpong-deploy"
cat >"$home/pingpong-deploy/kustomization.yaml" <<YAML
resources:
  - ../pingpong/k8s/overlays/canary
images:
  - name: ponger
    newName: ${PINGPONG_REGISTRY}ponger
  - name: pinger
    newName: ${PINGPONG_REGISTRY}pinger
YAML
touch "$done_marker"
