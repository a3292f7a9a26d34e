# Settings of the workshop; the presenter sets them once for the audience.
# The repository (cloned to /root/pingpong) and the registry holding the
# images built by `REGISTRY=<registry>/ docker buildx bake --push`
# (ponger:initial, ponger:errors, ponger:slow, ponger:best, pinger:latest).
export PINGPONG_REPO="${PINGPONG_REPO:-https://github.com/CHANGE-ME/pingpong.git}"
export PINGPONG_REF="${PINGPONG_REF:-main}"
export PINGPONG_REGISTRY="${PINGPONG_REGISTRY:-ghcr.io/change-me/}"
# The Argo Rollouts release README.md pins.
export ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.9.1}"
