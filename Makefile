# Entry points for people and CI. `make demo` and `make test` do all set-up.

CARGO          ?= cargo
HOST_TRIPLE    := $(shell rustc -vV | sed -n 's/^host: //p')
WASM_LD        := $(shell rustc --print sysroot)/lib/rustlib/$(HOST_TRIPLE)/bin/wasm-component-ld
WASM_TARGET    := wasm32-unknown-unknown
PLUGIN_OUT     := target/plugins

.PHONY: build host plugins plugins-py plugins-js test-guests fixtures feast-venv demo test test-unit test-integration lint fmt services services-stop chromium bench toolchain

toolchain:
	rustup show active-toolchain >/dev/null || rustup toolchain install
	rustup target add $(WASM_TARGET) wasm32-wasip2

## Build the host and every plugin (release).
build: host plugins

host:
	$(CARGO) build --release -p wafer

# Plugins are linked into components by the wasm-component-ld shipped with rustup.
plugins: toolchain
	cd plugins && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$(WASM_LD) \
		$(CARGO) build --release --target $(WASM_TARGET)
	mkdir -p $(PLUGIN_OUT)
	cp plugins/target/$(WASM_TARGET)/release/*.wasm $(PLUGIN_OUT)/

## Python and JavaScript plugins (pinned toolchains installed into .toolchains/ on first use).
plugins-py:
	scripts/build-plugins-py.sh

plugins-js:
	scripts/build-plugins-js.sh

## SDK and plugin logic of the Python and JavaScript guests, natively (no wasm).
test-guests:
	cd guest-sdk/python && python3 -m pytest -q
	cd plugins/user-activity-py && python3 -m pytest -q
	cd guest-sdk/js && node --test
	cd plugins/user-activity-js && node --test

# Test plugins (tests/fixtures): misbehaving ones for the sandbox tests, `tumbling` for late data,
# `rawevents` for raw-event aggregations, `month` (a 30-day window) for tiled windows,
# `sketches` for approx-quantile and distinct-count.
fixtures: toolchain
	cd tests/fixtures && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$(WASM_LD) \
		$(CARGO) build --release --target $(WASM_TARGET) -p misbehave -p tumbling -p rawevents -p month -p sketches
	cd tests/fixtures && $(CARGO) build --release --target wasm32-wasip2 -p wasi-import
	cd plugins && WAFER_PLUGIN_VERSION=0.2.0-reload CARGO_TARGET_DIR=../tests/fixtures/target/v2 \
		CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$(WASM_LD) \
		$(CARGO) build --release --target $(WASM_TARGET) -p user-activity
	mkdir -p target/fixtures
	cp tests/fixtures/target/v2/$(WASM_TARGET)/release/user_activity.wasm target/fixtures/user_activity_v2.wasm
	cp tests/fixtures/target/$(WASM_TARGET)/release/misbehave.wasm target/fixtures/
	cp tests/fixtures/target/$(WASM_TARGET)/release/tumbling.wasm target/fixtures/
	cp tests/fixtures/target/$(WASM_TARGET)/release/rawevents.wasm target/fixtures/
	cp tests/fixtures/target/$(WASM_TARGET)/release/month.wasm target/fixtures/
	cp tests/fixtures/target/$(WASM_TARGET)/release/sketches.wasm target/fixtures/
	cp tests/fixtures/target/wasm32-wasip2/release/wasi_import.wasm target/fixtures/

## Pinned Feast in .toolchains/feast-venv, for the Feast interop test (tests/tests/feast.rs).
feast-venv:
	scripts/feast/setup-venv.sh >/dev/null

## Quickstart on the embedded default: sample events -> plugin -> in-memory store.
demo: build
	./target/release/wafer demo

## Every test: unit tests, plugin logic natively, integration tests on real Kafka + Redis.
test: plugins plugins-py plugins-js fixtures feast-venv host services chromium
	$(CARGO) test --release --workspace
	cd plugins && $(CARGO) test --release
	$(MAKE) test-guests

test-unit: plugins
	$(CARGO) test --release -p wafer -p wafer-guest
	cd plugins && $(CARGO) test --release
	$(MAKE) test-guests

lint:
	$(CARGO) fmt --all -- --check
	cd plugins && $(CARGO) fmt --all -- --check
	cd tests/fixtures && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd plugins && $(CARGO) fmt --all
	cd tests/fixtures && $(CARGO) fmt --all

## Real Apache Kafka (KRaft, 127.0.0.1:9092) and Redis (127.0.0.1:6379).
services:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

## Headless Chromium (Debian package) for the status-page test.
chromium:
	scripts/chromium.sh

## Benchmarks (issue 6): in-process, WASM cost, memory, end to end vs the Python loop;
## writes docs/benchmarks.md. Starts Kafka and Redis itself; about 25 minutes.
bench: plugins plugins-py plugins-js
	scripts/bench/run.sh
