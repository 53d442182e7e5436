# Prometheus for the `monitoring` compose profile, built from the prometheus binary of Debian's
# package on this host (no registry is reachable on the build machines, so no image can be
# pulled): the binary, its shared libraries and its web assets. scripts/prometheus-image.sh
# assembles rootfs/; the config and rules come from docker/monitoring/ as volumes.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /prometheus/
USER 65534:65534
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=0.0.0.0:9090"]
