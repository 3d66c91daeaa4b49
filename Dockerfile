# syntax=docker/dockerfile:1.7
#
# podwarden images, from one build:
#   docker build --target proxy    -t ghcr.io/podwarden/podwarden-proxy:0.1.0 .
#   docker build --target operator -t ghcr.io/podwarden/podwarden-operator:0.1.0 .
# (`proxy` is also the default target.) BuildKit is required (cache mounts).
#
# The root filesystem is assembled by scripts/image-rootfs.sh, which CI also
# runs on its own machine into a temporary directory and checks
# (scripts/check-image.sh): binaries, file capabilities, the CRS and its pin.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# The OWASP CRS release the WAF is tested against.
ARG CRS_VERSION=4.28.0

FROM ${RUST_IMAGE} AS build
# cmake: native build dependencies of some crates; libcap2-bin: setcap.
# Package versions are not pinned (DL3008): Debian drops superseded versions
# from the archive at point releases, so exact pins break rebuilds; the base
# image tag pins the suite (bookworm) and security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# OWASP CRS, the release the WAF is tested against (rules/,
# crs-setup.conf.example, LICENSE). image-rootfs.sh checks the content
# digest it pins (CRS_TREE_SHA256); pass CRS_TARBALL_SHA256 to also pin the
# archive's bytes (see charts/podwarden/README.md, "The images").
ARG CRS_VERSION
ARG CRS_TARBALL_SHA256=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN curl -fsSL --retry 3 -o /tmp/crs.tar.gz \
      "https://github.com/coreruleset/coreruleset/archive/refs/tags/v${CRS_VERSION}.tar.gz" \
 && if [ -n "$CRS_TARBALL_SHA256" ]; then echo "$CRS_TARBALL_SHA256  /tmp/crs.tar.gz" | sha256sum -c -; fi \
 && mkdir -p /tmp/crs \
 && tar -xzf /tmp/crs.tar.gz -C /tmp/crs --strip-components=1 \
 && rm /tmp/crs.tar.gz

COPY . .
# The target dir is a cache mount (kept between builds, not in the layer):
# copy the binaries out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p podwarden-proxy -p podwarden-operator -p podwarden-cli --bins \
 && mkdir -p /out \
 && cp target/release/podwarden-proxy target/release/podwarden-operator target/release/podwarden /out/ \
 && strip /out/*
RUN bash scripts/image-rootfs.sh /rootfs --bin-dir /out --crs-dir /tmp/crs

FROM ${RUNTIME_IMAGE} AS operator
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /rootfs/usr/local/bin/podwarden-operator /rootfs/usr/local/bin/podwarden /usr/local/bin/
# The chart runs the operator as 65532 too (runAsNonRoot).
USER 65532:65532
ENTRYPOINT ["podwarden-operator"]
CMD ["run", "--config", "/etc/podwarden/config.yaml"]

FROM ${RUNTIME_IMAGE} AS proxy
# The file capabilities of podwarden-proxy-procattr must survive the copy
# between stages (BuildKit keeps security.* xattrs; the legacy builder lost
# them before moby#42934): read them back, and fail the build if they are gone.
# The proxy's state dir is made here rather than trusted to keep its owner
# through the copy (no --chown: a chown clears file capabilities).
COPY --from=build /rootfs/ /
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# iptables: `podwarden-proxy init` (the init container) runs iptables-restore.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates libcap2-bin \
 && getcap /usr/local/bin/podwarden-proxy-procattr | grep -q 'cap_dac_read_search,cap_sys_ptrace=ep' \
 && apt-get purge -y libcap2-bin \
 && install -d -m 0750 -o 1337 -g 1337 /var/lib/podwarden \
 && rm -rf /var/lib/apt/lists/*
ARG CRS_VERSION
LABEL io.podwarden.crs.version="${CRS_VERSION}" \
      io.podwarden.crs.path="/etc/podwarden/crs"
# The proxy UID: its own connections bypass interception (iptables owner
# match). The injected sidecar sets the same runAsUser; the init container
# overrides it with 0.
USER 1337:1337
ENTRYPOINT ["podwarden-proxy"]
CMD ["run"]
