#!/usr/bin/env bash
# Build RocksDB's C++ once per machine into a cache folder keyed by the librocksdb-sys version and
# its compression features, so every later build (dev or release, any clone) links the archive
# instead of compiling 343 C++ files again.
# Usage: build-rocksdb.sh CACHE_DIR LIBROCKSDB_SYS_VERSION WORKSPACE_LOCKFILE
set -euo pipefail
cache_dir=$1
version=$2
lockfile=$3
if [[ -f "$cache_dir/librocksdb.a" ]]; then
  exit 0
fi
mkdir -p "$(dirname "$cache_dir")"
# One build at a time per machine: a second caller waits and then finds the archive.
exec 9>"$cache_dir.lock"
flock 9
if [[ -f "$cache_dir/librocksdb.a" ]]; then
  exit 0
fi
echo "building RocksDB $version once into $cache_dir (about 20 minutes on 2 cores; later builds reuse it)"
# A throwaway crate that depends on librocksdb-sys alone, with the features the workspace's
# rocksdb dependency turns on (static, lz4, zstd), pinned by the workspace's own lockfile. It
# does not build any workspace code, so a broken tree cannot spoil the cache.
build_dir="$cache_dir.build"
mkdir -p "$build_dir/src"
cat >"$build_dir/Cargo.toml" <<TOML
[package]
name = "cairn-rocksdb-cache"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
librocksdb-sys = { version = "=$version", default-features = false, features = ["static", "bindgen-runtime", "lz4", "zstd"] }

[profile.release]
debug = false
TOML
echo "" >"$build_dir/src/lib.rs"
cp "$lockfile" "$build_dir/Cargo.lock"
# SSE 4.2 and PCLMUL give RocksDB hardware CRC32C: without them every WAL record, blob record and
# table block is checksummed in software, which a profile of `cairn add` showed as a third of its
# time. Every x86-64 server since 2010 has both. The flags apply to this throwaway build only; the
# workspace links the archive and never compiles RocksDB's C++ itself.
rustflags=""
if [[ "$(uname -m)" == "x86_64" ]]; then
  rustflags="-C target-feature=+sse4.2,+pclmulqdq"
fi
(cd "$build_dir" && env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$build_dir/target" \
  RUSTFLAGS="$rustflags" cargo build --release)
archive=$(find "$build_dir/target/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' | head -n 1)
if [[ -z "$archive" ]]; then
  echo "error: librocksdb.a not found under $build_dir" >&2
  exit 1
fi
rm -rf "$cache_dir.tmp"
mkdir -p "$cache_dir.tmp"
cp "$archive" "$cache_dir.tmp/librocksdb.a"
rm -rf "$cache_dir"
mv "$cache_dir.tmp" "$cache_dir"
rm -rf "$build_dir"
echo "RocksDB archive cached at $cache_dir/librocksdb.a"
