# The image the cluster tests build from the binary on the host (no registry is reachable on the
# build machines, so no base image can be pulled): the binary, the shared libraries `ldd` lists,
# nothing else. scripts/host-image.sh assembles rootfs/. The same user, volume, ports, health
# check and entry point as docker/Dockerfile.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data/ /var/lib/cairn/
USER 10001:10001
# The daemon listens for peers on 4001 and for the admin API on 5001 (all interfaces inside the
# container: publish 5001 on 127.0.0.1 only).
ENV CAIRN_DATA_DIR=/var/lib/cairn \
    CAIRN_ADMIN__LISTEN=0.0.0.0:5001 \
    CAIRN_P2P__LISTEN='["/ip4/0.0.0.0/tcp/4001"]'
VOLUME ["/var/lib/cairn"]
EXPOSE 4001 5001
HEALTHCHECK --interval=2s --timeout=5s --start-period=90s --retries=3 \
  CMD ["/usr/local/bin/cairn", "health", "--api", "http://127.0.0.1:5001"]
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["daemon", "--data-dir", "/var/lib/cairn", "--init"]
