# callstream container image.
#
#   docker build -t callstream:local --build-arg CALLSTREAM_GIT_REVISION=$(git rev-parse --short HEAD) .
#   docker run --rm callstream:local --help
#
# Works with BuildKit and with the legacy builder (no RUN --mount), so docker-compose v1 builds it
# too.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka-sys compiles librdkafka from source with its own configure script and make (no cmake),
# against the system OpenSSL and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependencies first, in their own layer: librdkafka alone takes minutes to compile, and this layer
# is reused until Cargo.toml or Cargo.lock change. The stub sources only satisfy the manifest.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/core.rs \
 && cargo build --release --locked \
 && rm -rf src benches

COPY . .

# Reported as the revision label of callstream_build_info.
ARG CALLSTREAM_GIT_REVISION=unknown
ENV CALLSTREAM_GIT_REVISION=${CALLSTREAM_GIT_REVISION}

# COPY keeps the context's modification times, which can be older than the stub build: touch the
# sources so that cargo rebuilds the crate itself.
RUN find src benches -name '*.rs' -exec touch {} + \
 && cargo build --release --locked \
 && install -m 0755 target/release/callstream /usr/local/bin/callstream

# ---- run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# libssl3 and zlib1g: librdkafka is linked against the system OpenSSL and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 callstream \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin callstream

COPY --from=builder /usr/local/bin/callstream /usr/local/bin/callstream

LABEL org.opencontainers.image.title="callstream" \
      org.opencontainers.image.description="Kafka stream processor for RingCentral telephony-session notifications" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# /metrics, /health/live and /health/ready (run only serves them when given --metrics-addr or
# CALLSTREAM_METRICS_ADDR, as docker-compose.yml and deploy/kubernetes do).
EXPOSE 9464

# callstream drains in-flight work and commits on SIGTERM (within --drain-timeout-ms, 20 s by
# default): give it a stop timeout longer than that (docker stop -t 30, compose stop_grace_period,
# Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["callstream"]
CMD ["run"]
