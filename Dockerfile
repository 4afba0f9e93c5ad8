# The contact-webhook image (manifests/webhook/deployment.yaml names it
# ghcr.io/milo-os/contact-webhook). It also carries contact-reconciler:
# override the command to run that one.
#
#   docker build -t ghcr.io/milo-os/contact-webhook:latest .
#   docker run --rm ghcr.io/milo-os/contact-webhook:latest --help
#
# Build stage: Debian's compiler and -dev packages, `make all` (-Werror, as in
# CI). Runtime stage: only the shared libraries the programs link, no shell
# tools beyond Debian slim's, running as 65532:65532 (runAsNonRoot in the
# Deployment; the root filesystem can be read-only: nothing is written).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libmicrohttpd-dev libgnutls28-dev \
      libjansson-dev libcurl4-gnutls-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY lib/ lib/
COPY webhook/ webhook/
COPY reconciler/ reconciler/
RUN make BUILD=build/image -j"$(nproc)" all \
 && strip --strip-unneeded build/image/contact-webhook build/image/contact-reconciler

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libgnutls30 libjansson4 libcurl3-gnutls libyaml-0-2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/image/contact-webhook /src/build/image/contact-reconciler \
     /usr/local/bin/
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/usr/local/bin/contact-webhook"]
