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
# Where cargo puts what it builds: ./target, or CARGO_TARGET_DIR (or a config's build.target-dir)
# when set. Evaluated when a recipe first needs it.
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps --offline 2>/dev/null \
	| sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

.PHONY: help deps rocksdb build run test test-unit lint deny fmt ci ci-cluster bench fuzz test-soak test-cluster bench-floods bench-scale test-alerts cluster-up cluster-down install clean

help:
	@echo "make run          build and start a node on a local data directory ($(RUN_DIR))"
	@echo "make test         run the test suite"
	@echo "make bench        print throughput ratios measured against same-run baselines"
	@echo "make bench-floods an honest member's throughput under each flood (part of make bench)"
	@echo "make bench-scale  how cost grows with store size, cluster size and file size (tables + PNG)"
	@echo "make lint         cargo fmt --check and clippy -D warnings"
	@echo "make ci           what .ci/run runs: lint, test, and the docker cluster tests when docker answers"
	@echo "make fuzz         run the fuzz targets (FUZZ_SECONDS each, default 60)"
	@echo "make test-alerts  promtool checks and unit-tests the Prometheus alerting rules"
	@echo "make test-soak    three release daemons under load, kill -9 and a hostile flood (minutes)"
	@echo "make test-cluster the docker-compose cluster tests (an image from this host's binary)"
	@echo "make cluster-up   a five-node private cluster in docker-compose (cluster-down stops it)"
	@echo "make monitoring-up the same cluster with Prometheus and its alerts (cluster-down stops it)"
	@echo "make install      the binary, the systemd unit and a default config (as root)"

# System packages the build needs: libclang for RocksDB's bindgen step.
deps:
	@if ! command -v systemd-analyze >/dev/null 2>&1; then \
		echo "installing systemd's tools (the unit's tests run systemd-analyze)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq systemd >/dev/null; \
	fi
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
	@scripts/run-node.sh "$(TARGET_DIR)/debug/cairn" "$(RUN_DIR)"

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

ci: lint deny test test-alerts ci-cluster

# cargo-deny: licences, bans and sources from the lock file alone; advisories against the live
# RustSec database when it can be fetched, else against a snapshot (scripts/deny-advisories.sh
# says which, with its commit and date).
deny:
	@# A debug build of the tool: it compiles in a third of release's time and checks this
	@# workspace in about a second either way.
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install --locked --debug cargo-deny
	@# cargo deny reads `cargo metadata` for every platform: fetch every locked crate first (a
	@# fresh machine has only those its own builds needed).
	$(CARGO) fetch --locked
	$(CARGO) deny --offline check licenses bans sources
	@CARGO="$(CARGO)" scripts/deny-advisories.sh

# The soak test (tests/tests/soak.rs): three release daemons under honest load while one is
# killed with SIGKILL in a loop and another flooded by a hostile peer. SOAK_BASELINE_SECONDS and
# SOAK_FLOOD_SECONDS set the two phases (60 and 120). Not part of `make test` or `make ci`.
test-soak: rocksdb
	$(CARGO) build --release --locked -p cairn-node --bin cairn
	@mkdir -p target
	CAIRN_BIN=$(TARGET_DIR)/release/cairn $(CARGO) test --release --locked -p cairn-tests \
		--test soak -- --ignored --nocapture 2>&1 | tee target/test-soak.log

# The docker cluster tests: an image built from the host's dev binary (no registry is reachable
# on the build machines; the dev profile optimises every dependency, see Cargo.toml, so CI builds
# the workspace once), then the scenarios of tests/tests/cluster.rs, one cluster at a time.
CLUSTER_IMAGE ?= cairn:test
CLUSTER_PROMETHEUS_IMAGE ?= cairn-prometheus:test
test-cluster: rocksdb
	$(CARGO) build --locked -p cairn-node --bin cairn
	scripts/host-image.sh "$(TARGET_DIR)/debug/cairn" $(CLUSTER_IMAGE)
	scripts/prometheus-image.sh $(CLUSTER_PROMETHEUS_IMAGE)
	@mkdir -p target
	CAIRN_IMAGE=$(CLUSTER_IMAGE) CAIRN_PROMETHEUS_IMAGE=$(CLUSTER_PROMETHEUS_IMAGE) \
		$(CARGO) test --locked -p cairn-tests --test cluster -- \
		--ignored --test-threads=1 2>&1 | tee target/test-cluster.log

# The alerting rules (docker/monitoring/alerts.yml): promtool, from Debian's prometheus package,
# checks them and runs their unit tests (alerts.test.yml: each alert fires and resolves).
test-alerts:
	@command -v promtool >/dev/null 2>&1 || { \
		echo "installing Debian's prometheus package (for promtool)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq prometheus >/dev/null; }
	promtool check rules docker/monitoring/alerts.yml
	cd docker/monitoring && promtool test rules alerts.test.yml
	python3 -m json.tool docker/monitoring/grafana-dashboard.json >/dev/null

# `make ci` runs the cluster tests whenever a Docker engine (and docker-compose) answers.
ci-cluster:
	@if command -v docker-compose >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory test-cluster; \
	else \
		echo "SKIPPED: docker cluster tests (no Docker engine or docker-compose answers here)"; \
	fi

# A five-node private cluster from docker/docker-compose.yml, admin APIs on 127.0.0.1:5101-5105.
# Builds the image first when it is missing (docker/Dockerfile; needs the Rust and Debian images).
IMAGE ?= cairn:latest
cluster-up:
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || docker build -f docker/Dockerfile -t $(IMAGE) .
	CAIRN_IMAGE=$(IMAGE) docker-compose -f docker/docker-compose.yml -p cairn up -d

cluster-down:
	CAIRN_IMAGE=$(IMAGE) docker-compose -f docker/docker-compose.yml -p cairn --profile monitoring down

# The same cluster with Prometheus (the `monitoring` profile): alerts from
# docker/monitoring/alerts.yml, the UI on http://127.0.0.1:9090/alerts.
PROMETHEUS_IMAGE ?= cairn-prometheus:latest
monitoring-up:
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || docker build -f docker/Dockerfile -t $(IMAGE) .
	@docker image inspect $(PROMETHEUS_IMAGE) >/dev/null 2>&1 || scripts/prometheus-image.sh $(PROMETHEUS_IMAGE)
	CAIRN_IMAGE=$(IMAGE) CAIRN_PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE) \
		docker-compose -f docker/docker-compose.yml -p cairn --profile monitoring up -d

# As root: the binary, the systemd unit, the README, and the example config unless one exists.
PREFIX ?= /usr/local
install: rocksdb
	$(CARGO) build --release --locked -p cairn-node --bin cairn
	install -D -m 0755 "$(TARGET_DIR)/release/cairn" $(DESTDIR)$(PREFIX)/bin/cairn
	install -D -m 0644 systemd/cairn.service $(DESTDIR)/etc/systemd/system/cairn.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/cairn/README.md
	@if [ ! -e $(DESTDIR)/etc/cairn/cairn.toml ]; then \
		install -D -m 0644 config/cairn.example.toml $(DESTDIR)/etc/cairn/cairn.toml; fi
	@echo "installed; now: systemctl daemon-reload && systemctl enable --now cairn"

bench: rocksdb
	$(CARGO) bench --locked -p cairn-node --bench foundation
	$(CARGO) bench --locked -p cairn-node --bench api
	$(CARGO) bench --locked -p cairn-tests --bench replication
	$(CARGO) bench --locked -p cairn-tests --bench floods

# The floods part of `make bench` alone: an honest member's throughput under each flood.
bench-floods: rocksdb
	$(CARGO) bench --locked -p cairn-tests --bench floods

# How cost grows with the work (store size, cluster size, file size): Markdown tables, CSVs in
# target/bench-scale/, and docs/bench-scale.png drawn from them by scripts/plot-scale.py with
# matplotlib from PyPI in a virtualenv under target/. `make bench-scale PARTS=files` runs one.
PARTS ?=
bench-scale: rocksdb
	BENCH_SCALE_OUT="$(CURDIR)/target/bench-scale" $(CARGO) bench --locked -p cairn-tests --bench scale -- $(PARTS)
	@if command -v python3 >/dev/null 2>&1 \
		&& { [ -x target/plot-venv/bin/python ] || python3 -m venv target/plot-venv; } \
		&& { target/plot-venv/bin/python -c 'import matplotlib' 2>/dev/null \
			|| target/plot-venv/bin/pip install --quiet matplotlib; }; then \
		target/plot-venv/bin/python scripts/plot-scale.py target/bench-scale docs/bench-scale.png; \
	else echo "bench-scale: no plot (it needs python3 with venv, and matplotlib from PyPI); the tables and CSVs are above"; fi

FUZZ_SECONDS ?= 60
# Every decoder of outside bytes, plus the blockstore model (blockstore/fuzz). Crashes are kept
# in fuzz/artifacts/<target>/ (blockstore/fuzz/artifacts for the model) and become tests.
FUZZ_TARGETS := wire_messages signed_records config_text unixfs_reader car_import capability
fuzz: rocksdb
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	cd blockstore/fuzz && $(CARGO) +nightly fuzz run store_model -- -max_total_time=$(FUZZ_SECONDS)
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		(cd fuzz && $(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

clean:
	$(CARGO) clean
