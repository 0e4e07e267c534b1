# syntax=docker/dockerfile:1
# The Wafer image: the `wafer` host and the Rust feature plugins, built in
# release, on a slim Debian runtime as a non-root user. Plugins live in
# /plugins, the hot-load directory the shipped config (docker/wafer.toml)
# points at. Usage: docker-compose.yml and docs/operations.md.
#
#   docker build -t wafer .
#   docker run --rm wafer --help

# Keep equal to the channel in rust-toolchain.toml (tests/tests/container.rs checks it).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-trixie AS builder
WORKDIR /src
# The toolchain file pins the channel, the wasm targets and the components.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustup target add wasm32-unknown-unknown
COPY . .
# The host, then the plugins, linked into components by the wasm-component-ld
# shipped with rustup (as the Makefile's `plugins` target does).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p wafer \
 && cd plugins \
 && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld" \
    cargo build --release --locked --target wasm32-unknown-unknown \
 && mkdir -p /out/plugins \
 && cp /src/target/release/wafer /out/wafer \
 && cp /src/plugins/target/wasm32-unknown-unknown/release/*.wasm /out/plugins/

FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/wafer --create-home wafer \
 && mkdir -p /plugins /etc/wafer /var/cache/wafer \
 && chown wafer:wafer /plugins /var/cache/wafer
COPY --from=builder /out/wafer /usr/local/bin/wafer
COPY --from=builder --chown=wafer:wafer /out/plugins/ /plugins/
COPY docker/wafer.toml /etc/wafer/wafer.toml
ENV RUST_LOG=info,rdkafka=warn
USER wafer
WORKDIR /var/lib/wafer
ENTRYPOINT ["wafer"]
CMD ["run","--config","/etc/wafer/wafer.toml"]
