# shellcheck shell=bash
# Settings of the workshop; the presenter sets them once for the audience.
# Killercoda copies this file to /root (an asset's target is a directory).
#
# PINGPONG_REPO: the repository, cloned to /root/pingpong. Change CHANGE-ME to
# the GitHub owner whose fork the workshop uses: its images.yml workflow
# pushes ponger:initial|errors|slow|best and pinger:latest to
# ghcr.io/<owner>/ on every push to main, which is the default registry below.
export PINGPONG_REPO="${PINGPONG_REPO:-https://github.com/CHANGE-ME/pingpong.git}"
export PINGPONG_REF="${PINGPONG_REF:-main}"
# The registry prefix of the images (ends with "/"): by default the GitHub
# container registry of the repository's owner, where images.yml pushes.
if [ -z "${PINGPONG_REGISTRY:-}" ]; then
  case "$PINGPONG_REPO" in
    https://github.com/*/*)
      owner="${PINGPONG_REPO#https://github.com/}"
      owner="${owner%%/*}"
      PINGPONG_REGISTRY="ghcr.io/$(printf '%s' "$owner" | tr '[:upper:]' '[:lower:]')/"
      unset owner
      ;;
  esac
fi
export PINGPONG_REGISTRY="${PINGPONG_REGISTRY:-}"
# The Argo Rollouts release the repository pins (README.md; its CRDs are
# vendored in deploycheck/crds/argo-rollouts).
export ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.9.1}"
