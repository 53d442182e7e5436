# Cairn's entry points. Every cargo call goes through the `rocksdb` step first, which builds
# RocksDB's C++ once per machine into ~/.cache/cairn and links it from there (see
# scripts/build-rocksdb.sh and .cargo/config.toml).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
ROCKSDB_SYS_VERSION := $(shell awk '/^name = "librocksdb-sys"/ { getline; gsub(/"/, "", $$3); print $$3 }' Cargo.lock)
ROCKSDB_CACHE ?= $(HOME)/.cache/cairn/librocksdb-sys-$(ROCKSDB_SYS_VERSION)-lz4-zstd-sse42
# Where `make run` keeps its node.
RUN_DIR ?= $(CURDIR)/.cairn

.PHONY: help deps rocksdb build run test test-unit lint fmt ci bench fuzz test-cluster clean

help:
	@echo "make run          build and start a node on a local data directory ($(RUN_DIR))"
	@echo "make test         run the test suite"
	@echo "make bench        print throughput ratios measured against same-run baselines"
	@echo "make lint         cargo fmt --check and clippy -D warnings"
	@echo "make ci           what .ci/run runs: lint, test, and the docker cluster tests when docker answers"
	@echo "make fuzz         run the fuzz targets (FUZZ_SECONDS each, default 60)"

# System packages the build needs: libclang for RocksDB's bindgen step.
deps:
	@if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libclang[-.0-9]*\.so'; then \
		echo "installing libclang-dev (RocksDB's bindings need it)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libclang-dev >/dev/null; \
	fi

rocksdb: deps
	@scripts/build-rocksdb.sh "$(ROCKSDB_CACHE)" "$(ROCKSDB_SYS_VERSION)" "$(CURDIR)/Cargo.lock"
	@ln -sfn "$(ROCKSDB_CACHE)" .rocksdb

build: rocksdb
	$(CARGO) build --workspace --locked

run: rocksdb
	$(CARGO) build --locked -p cairn-node --bin cairn
	@scripts/run-node.sh "$(CURDIR)/target/debug/cairn" "$(RUN_DIR)"

# The log feeds the one-line total printed last (cargo prints a result line per test binary).
test: rocksdb
	@mkdir -p target
	$(CARGO) test --workspace --locked 2>&1 | tee target/test.log
	@scripts/test-summary.sh target/test.log

lint: rocksdb
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

ci: lint test test-cluster

test-cluster:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		echo "docker answers, but no cluster tests exist yet (they arrive with the deployment issue)"; \
	else \
		echo "SKIPPED: docker cluster tests (no Docker engine answers here)"; \
	fi

bench: rocksdb
	$(CARGO) bench --locked -p cairn-node --bench foundation
	$(CARGO) bench --locked -p cairn-node --bench api
	$(CARGO) bench --locked -p cairn-tests --bench replication

FUZZ_SECONDS ?= 60
fuzz: rocksdb
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	cd blockstore/fuzz && $(CARGO) +nightly fuzz run store_model -- -max_total_time=$(FUZZ_SECONDS)

clean:
	$(CARGO) clean
