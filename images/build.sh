#!/usr/bin/env bash
# Build freqtrade-pool:latest and ftpool-controller:latest without any image registry
# (`make images` runs this).
#
#   images/build.sh                        pool FROM freqtradeorg/freqtrade:stable if it is
#                                          present locally, else FROM
#                                          ftpool/freqtrade:offline-trixie (Debian trixie,
#                                          Python 3.13, the official image 3.12+; built here
#                                          first: images/base/build.sh)
#   BASE_IMAGE=<image> images/build.sh     pool FROM <image> (the offline base when <image> is
#                                          not present locally: nothing can be pulled)
#
# The controller is built FROM CONTROLLER_BASE_IMAGE: python:3.11-slim-bookworm if present
# locally, else ftpool/debian:bookworm (Python 3.11 like the host). Wheelhouses (images/wheels.sh) are made on the host for
# each base's Python; the docker builds are offline and use docker's layer cache, and the
# debootstrap and FreqTrade wheels are skipped when the offline base images exist.
# Env: BASE_IMAGE, CONTROLLER_BASE_IMAGE, POOL_IMAGE, CONTROLLER_IMAGE, POOL_SLOTS.
set -euo pipefail

images=$(cd "$(dirname "$0")" && pwd)
OFFICIAL=freqtradeorg/freqtrade:stable
POOL_SUITE=trixie # the offline pool base's Debian (Python 3.13: immortal objects, PEP 683)
OFFLINE=ftpool/freqtrade:offline-$POOL_SUITE
CONTROLLER_SUITE=bookworm
DEBIAN=ftpool/debian:$CONTROLLER_SUITE
POOL_IMAGE=${POOL_IMAGE:-freqtrade-pool:latest}
CONTROLLER_IMAGE=${CONTROLLER_IMAGE:-ftpool-controller:latest}
POOL_SLOTS=${POOL_SLOTS:-100}
export DOCKER_BUILDKIT=0 # the classic builder: no buildx here, and it needs no registry

log() { printf '[images] %s\n' "$*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
    if have "$OFFICIAL"; then base=$OFFICIAL; else base=$OFFLINE; fi
elif [ "$base" != "$OFFLINE" ] && ! have "$base"; then
    log "BASE_IMAGE=$base is not present locally (no registry to pull from): using $OFFLINE"
    base=$OFFLINE
fi
cbase=${CONTROLLER_BASE_IMAGE:-}
if [ -z "$cbase" ]; then
    if have python:3.11-slim-bookworm; then cbase=python:3.11-slim-bookworm; else cbase=$DEBIAN; fi
elif [ "$cbase" != "$DEBIAN" ] && ! have "$cbase"; then
    log "CONTROLLER_BASE_IMAGE=$cbase is not present locally: using $DEBIAN"
    cbase=$DEBIAN
fi
log "pool base: $base; controller base: $cbase"

if [ "$base" = "$OFFLINE" ]; then
    DEBIAN_SUITE=$POOL_SUITE "$images/base/build.sh" all
fi
if [ "$cbase" = "$DEBIAN" ]; then
    DEBIAN_SUITE=$CONTROLLER_SUITE "$images/base/build.sh" debian
fi

# The Dockerfiles read their wheelhouse from the build context, images/.cache/wheelhouse/*.
"$images/wheels.sh" "$base" "$images/.cache/wheelhouse/pool"
"$images/wheels.sh" "$cbase" "$images/.cache/wheelhouse/controller"

log "docker build -> $POOL_IMAGE (FROM $base)"
docker build --build-arg "BASE_IMAGE=$base" --build-arg "POOL_SLOTS=$POOL_SLOTS" \
    -f "$images/pool/Dockerfile" -t "$POOL_IMAGE" "$images"
log "docker build -> $CONTROLLER_IMAGE (FROM $cbase)"
docker build --build-arg "BASE_IMAGE=$cbase" \
    -f "$images/controller/Dockerfile" -t "$CONTROLLER_IMAGE" "$images"

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' |
    grep -E "^($POOL_IMAGE|$CONTROLLER_IMAGE|$OFFLINE|$DEBIAN)\b" | sed 's/^/[images] /' >&2 || true
