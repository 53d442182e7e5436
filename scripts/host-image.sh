#!/usr/bin/env bash
# Builds a container image from a cairn binary built on this host: the binary and the shared
# libraries `ldd` lists, in a FROM scratch image (docker/host-image.Dockerfile). Used by the
# cluster tests, because no registry (and so no base image) is reachable here.
#   scripts/host-image.sh target/debug/cairn cairn:test
set -euo pipefail
binary=$1
image=$2
here=$(cd "$(dirname "$0")/.." && pwd)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin" "$context/data"
cp "$binary" "$context/rootfs/usr/local/bin/cairn"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
cp "$here/docker/host-image.Dockerfile" "$context/Dockerfile"
docker build --quiet --tag "$image" "$context" >/dev/null
echo "built $image from $binary"
