# The Eddy image: one static binary and nothing else. Every role runs it with its
# own argument; the chart runs `eddy gateway`, `eddy worker` and `eddy controller`.
#
#   make image        # scripts/image.sh: builds the static (x86_64 musl) binary,
#                     # then this file, with podman or docker
#
# The build context is not the repository: scripts/image.sh hands the engine a
# directory holding only `eddy` and an empty `cache/`, so nothing else can leak
# into the image and no toolchain image has to be pulled.
#
# Why nothing else is needed:
# - TLS roots (OTLP, HTTPS callbacks) are compiled in (webpki-roots);
# - musl resolves host names from /etc/resolv.conf and /etc/hosts, which the
#   container runtime mounts;
# - the chart's preStop hook is the kubelet's own `sleep` action, not /bin/sleep.
FROM scratch
COPY --chmod=0555 eddy /eddy
# The compiled-module cache; the chart mounts an emptyDir over it.
COPY --chown=10001:10001 cache /var/cache/eddy
# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd.
USER 10001:10001
ENV EDDY_CACHE_DIR=/var/cache/eddy \
    EDDY_LOG_FORMAT=json
# gateway 8080, controller 8081, worker health/metrics 9090
EXPOSE 8080 8081 9090
ENTRYPOINT ["/eddy"]
CMD ["--help"]
