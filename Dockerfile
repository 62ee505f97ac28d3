# syntax=docker/dockerfile:1
# One image for every Eddy role; the chart runs it as `eddy gateway`,
# `eddy worker` and `eddy controller`.
#
#   docker build -t eddy:0.1.0 .
#
# Runtime base: debian-slim rather than distroless or scratch, for two reasons:
# - the worker's (and gateway's) preStop hook is `/bin/sleep N`, so KEDA, the HPA and
#   the Service endpoints see the pod leave before SIGTERM starts the drain; a
#   distroless image has no sleep (Kubernetes >= 1.30 also has a built-in
#   `preStop.sleep` action, but the chart supports the exec form everywhere);
# - the binary is built for the glibc target: wasmtime's hot paths allocate from many
#   threads and musl's allocator is much slower there, and a fully static glibc binary
#   cannot use NSS for DNS (Redis and callback host names). Build and runtime stages
#   use the same Debian release, so the glibc versions match.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds; the binary
# is copied out of the cached target directory before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin eddy \
    && install -D -m 0755 target/release/eddy /out/eddy

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: OTLP exporters and HTTPS callbacks verify servers against them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 eddy \
    && useradd --system --uid 10001 --gid eddy --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin eddy \
    && install -d -o eddy -g eddy /var/cache/eddy
COPY --from=build /out/eddy /usr/local/bin/eddy
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
ENV EDDY_CACHE_DIR=/var/cache/eddy \
    EDDY_LOG_FORMAT=json
# gateway 8080, controller 8081, worker health/metrics 9090
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/eddy"]
CMD ["--help"]
