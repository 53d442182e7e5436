#!/usr/bin/env bash
# Builds the `monitoring` profile's Prometheus image from Debian's prometheus package on this
# host (installed when missing): the binary, the shared libraries `ldd` lists and the web
# assets, in a FROM scratch image (docker/monitoring/prometheus-image.Dockerfile).
#   scripts/prometheus-image.sh cairn-prometheus:latest
set -euo pipefail
image=$1
here=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Debian's prometheus package"
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null
fi
binary=$(command -v prometheus)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/bin" "$context/rootfs/etc/prometheus" "$context/data"
cp "$binary" "$context/rootfs/usr/bin/prometheus"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
if [ -d /usr/share/prometheus ]; then
  mkdir -p "$context/rootfs/usr/share"
  # -L: Debian links the web assets to its libjs-* packages.
  cp -rL /usr/share/prometheus "$context/rootfs/usr/share/prometheus"
fi
cp "$here/docker/monitoring/prometheus-image.Dockerfile" "$context/Dockerfile"
docker build --quiet --tag "$image" "$context" >/dev/null
echo "built $image from $binary"
