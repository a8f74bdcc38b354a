# syntax=docker/dockerfile:1
#
# The tidemark image (ghcr.io/tidemark/tidemark), as run by kustomize/base/deployment.yaml:
#   docker build -t ghcr.io/tidemark/tidemark:0.1.0 .
#
# NOTE: this file has not been built where tidemark is developed: that environment has no
# Docker (or other container) engine, so nothing here is exercised by `cargo test` or CI.
# What is checked there is the binary it builds (`cargo build --release --locked --bin
# tidemark` is the same command) and the manifests that run it (tests/install_manifests.rs).

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# aws-lc-sys (rustls' crypto provider) builds C code with cc; cmake is its fallback build
# system on platforms without the cc-only build. The rest of what the build needs from the
# system (OpenSSL headers for libgit2; nasm and autotools for ISA-L, the archive's gzip) is
# whatever scripts/build-deps installs, the same list as for local builds and CI.
COPY scripts/build-deps /usr/local/bin/tidemark-build-deps
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && tidemark-build-deps \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads: the manifest and lockfile (--locked: exactly the dependency
# versions that were tested), the sources, and benches/ because Cargo.toml declares a bench
# target there. (A .dockerignore listing target/ would also keep local build output out of
# the build context that is sent to the engine.)
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tidemark \
    && install -m 0755 target/release/tidemark /tidemark

# ---- run --------------------------------------------------------------------------------
# distroless "cc": glibc and libgcc for a dynamically linked Rust binary, no shell, no
# package manager; ":nonroot" runs as uid/gid 65532, which the Deployment's securityContext
# also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /tidemark /tidemark
USER 65532:65532
# Metrics and health (the Deployment's defaults: --metrics-address 0.0.0.0:8085,
# --health-address 0.0.0.0:8086).
EXPOSE 8085 8086
ENTRYPOINT ["/tidemark"]
CMD ["--help"]
