# syntax=docker/dockerfile:1.7
#
# One build of both binaries, then one small runtime image per published tag:
#   ponger-initial, ponger-errors, ponger-slow, ponger-best  -> ponger:<profile>
#   pinger                                                   -> pinger
# `docker buildx bake` (docker-bake.hcl) builds and tags all of them; a single
# image is `docker build --target ponger-errors -t ponger:errors .`.

# Builder and runtime on the same Debian release (13, trixie), so that the
# binary's glibc symbols exist at run time.
ARG RUST_IMAGE=rust:1.95-slim-trixie
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian13:nonroot

# checkov:skip=CKV_DOCKER_7:the image is the ARG RUST_IMAGE, whose default above pins rust:1.95; checkov cannot resolve ARGs
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace is needed because Cargo.toml lists every member; the
# .dockerignore keeps target/, .git/ and the deployment assets out of the
# context. BuildKit cache mounts keep the registry and the target directory
# between builds, so a source change recompiles only the workspace crates.
COPY . .
# Becomes the `revision` label of ponger_build_info and pinger_build_info.
ARG BUILD_REVISION=""
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ponger -p pinger \
    && mkdir -p /out \
    && cp target/release/ponger target/release/pinger /out/

# Distroless "cc" carries glibc and libgcc_s (needed by Rust's unwinder), no
# shell and no package manager. The :nonroot variant's user is 65532; it is
# restated numerically so that Kubernetes' runAsNonRoot can verify it.
# checkov:skip=CKV_DOCKER_2:distroless has no shell or HTTP client for a HEALTHCHECK; Kubernetes probes /readyz and /healthz, compose relies on Prometheus' up
FROM ${RUNTIME_IMAGE} AS runtime
USER 65532:65532
LABEL org.opencontainers.image.licenses="Apache-2.0"

FROM runtime AS pinger
COPY --from=build /out/pinger /usr/local/bin/pinger
ENV PINGER_LISTEN=0.0.0.0:8081
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/pinger"]

FROM runtime AS ponger-base
COPY --from=build /out/ponger /usr/local/bin/ponger
ENV PONGER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ponger"]

# The tag bakes in the profile (and therefore the default version label).
FROM ponger-base AS ponger-initial
ENV PONGER_PROFILE=initial

FROM ponger-base AS ponger-errors
ENV PONGER_PROFILE=errors

FROM ponger-base AS ponger-slow
ENV PONGER_PROFILE=slow

FROM ponger-base AS ponger-best
ENV PONGER_PROFILE=best
