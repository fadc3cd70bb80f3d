# membersync container image: one binary, every role (DESIGN 2, 10).
#
#   docker build -t membersync:dev .
#   docker run --rm membersync:dev --help
#
# The build stage compiles `membersync` and `membersync-sim` against Debian 12's
# -dev packages; the runtime stage carries only the matching runtime
# libraries (tests/deploy/test_image_runtime_deps.py checks that this list
# covers what the binaries link), runs as an unprivileged user and works with
# a read-only root filesystem (nothing is written outside /tmp).

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      librdkafka-dev libavro-dev libcurl4-openssl-dev libpq-dev libconfig-dev \
      libjansson-dev libmicrohttpd-dev libjwt-dev libutf8proc-dev uuid-dev \
      libcmocka-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Release flags: the image runs optimised code; tests run in CI, not here
# (the unit test targets still build because CMake adds them unconditionally,
# which is why libcmocka-dev and python3 are in the build stage).
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target membersync membersync-sim \
 && strip --strip-unneeded /build/membersync /build/membersync-sim

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries only: one package per -dev package of the build stage.
# Keep this list on one `apt-get install` line: the runtime-deps test reads it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka1 libavro23 libcurl4 libpq5 libconfig9 libjansson4 libmicrohttpd12 libjwt0 libutf8proc2 libuuid1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can verify it
# without an /etc/passwd lookup, and volume ownership is predictable.
RUN groupadd --system --gid 10001 membersync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin membersync
COPY --from=build /build/membersync /build/membersync-sim /usr/local/bin/
COPY widget/ /usr/share/membersync/widget/
COPY config/membersync.conf /etc/membersync/membersync.conf
ENV MEMBERSYNC_CONFIG=/etc/membersync/membersync.conf \
    MEMBERSYNC_API_WIDGET_DIR=/usr/share/membersync/widget
USER 10001:10001
# api listens on 8080 (api.listen), the other roles' /livez /readyz /metrics
# on health.port (9090 in the Helm chart).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/membersync"]
CMD ["--help"]
