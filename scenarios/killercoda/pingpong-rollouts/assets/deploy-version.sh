#!/usr/bin/env bash
# deploy-version.sh <initial|errors|slow|best>: changes the ponger Rollout's
# image and its version label together, as README.md does.
set -euo pipefail
# shellcheck source=pingpong-env.sh
source "${HOME:-/root}/pingpong-env.sh"
version="${1:?usage: deploy-version.sh initial|errors|slow|best}"
case "$version" in
  initial|errors|slow|best) ;;
  *) echo "unknown version $version: initial, errors, slow or best" >&2; exit 2 ;;
esac
kubectl -n pingpong patch rollout ponger --type json -p "[
  {\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/image\", \"value\": \"${PINGPONG_REGISTRY}ponger:${version}\"},
  {\"op\": \"replace\", \"path\": \"/spec/template/metadata/labels/app.kubernetes.io~1version\", \"value\": \"${version}\"}]"
