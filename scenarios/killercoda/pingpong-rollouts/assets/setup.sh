#!/usr/bin/env bash
# Background setup: the repository and an overlay pointing at the registry.
set -euo pipefail
source /root/pingpong-env.sh
git clone --depth 1 --branch "$PINGPONG_REF" "$PINGPONG_REPO" /root/pingpong
mkdir -p /root/pingpong-deploy
cat > /root/pingpong-deploy/kustomization.yaml <<YAML
resources:
  - /root/pingpong/k8s/overlays/canary
images:
  - name: ponger
    newName: ${PINGPONG_REGISTRY}ponger
  - name: pinger
    newName: ${PINGPONG_REGISTRY}pinger
YAML
touch /tmp/pingpong-setup-done
