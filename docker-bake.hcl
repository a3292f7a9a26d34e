// Builds every image from the one Dockerfile (the Rust build stage is shared,
// so both binaries compile once):
//   docker buildx bake                          # ponger:{initial,errors,slow,best}, pinger:latest
//   REGISTRY=ghcr.io/me/ docker buildx bake --push
//   docker buildx bake ponger-errors            # one image
// REGISTRY is a prefix and must end with "/" when set.

variable "REGISTRY" {
  default = ""
}

variable "REVISION" {
  default = ""
}

variable "PINGER_TAG" {
  default = "latest"
}

group "default" {
  targets = ["ponger", "pinger"]
}

target "_common" {
  context    = "."
  dockerfile = "Dockerfile"
  args = {
    BUILD_REVISION = "${REVISION}"
  }
  labels = {
    "org.opencontainers.image.revision" = "${REVISION}"
  }
}

// One target per ponger profile; the Dockerfile stage is ponger-<profile>
// and the image tag is the profile.
target "ponger" {
  inherits = ["_common"]
  name     = "ponger-${profile}"
  matrix = {
    profile = ["initial", "errors", "slow", "best"]
  }
  target = "ponger-${profile}"
  tags   = ["${REGISTRY}ponger:${profile}"]
}

target "pinger" {
  inherits = ["_common"]
  target   = "pinger"
  tags     = ["${REGISTRY}pinger:${PINGER_TAG}"]
}
