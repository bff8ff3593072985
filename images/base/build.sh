#!/usr/bin/env bash
# The offline base images, for machines that reach no image registry:
#
#   ftpool/debian:SUITE       Debian SUITE minbase with python3, debootstrapped on the host and
#                             `docker import`ed (trixie: Python 3.13; the official image runs
#                             3.12 or newer)
#   ftpool/freqtrade:offline-SUITE
#                             FreqTrade FROM it, laid out like freqtradeorg/freqtrade (user
#                             ftuser uid 1000, /freqtrade, `pip install --user` into
#                             /home/ftuser/.local, ENTRYPOINT freqtrade, CMD trade), installed
#                             from wheels built on the host
#
# Usage: images/base/build.sh [debian|freqtrade|all]    (default: all)
# Work already done is skipped: an existing image is not built again, and the rootfs tarball and
# the wheelhouse are kept in $IMAGES_CACHE (default images/.cache, gitignored).
# Env: DEBIAN_SUITE (default trixie; the controller's base is bookworm), FREQTRADE_VERSION
# (default 2026.9), DEBIAN_MIRROR, IMAGES_CACHE, FORCE=1 (rebuild the images; the cached rootfs
# and wheels are reused, delete them to start from scratch).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=$(dirname "$here")
what=${1:-all}
case $what in debian | freqtrade | all) ;; *) echo "usage: $0 [debian|freqtrade|all]" >&2 && exit 2 ;; esac

FREQTRADE_VERSION=${FREQTRADE_VERSION:-2026.9}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGES_CACHE=${IMAGES_CACHE:-$images/.cache}
DEBIAN_SUITE=${DEBIAN_SUITE:-trixie}
case $DEBIAN_SUITE in *[!a-z]* | '') echo "DEBIAN_SUITE must be a Debian code name" >&2 && exit 2 ;; esac
DEBIAN_IMAGE=ftpool/debian:$DEBIAN_SUITE
FREQTRADE_IMAGE=ftpool/freqtrade:offline-$DEBIAN_SUITE
# Runtime needs: python3 (+venv for ftpool's own venv, pip for `pip install --user`), TLS roots,
# sqlite3 like the official image, libgomp1 (OpenMP for numpy/scipy/ta-lib builds), tzdata and
# netbase as in python:*-slim.
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,sqlite3,libgomp1,tzdata,netbase
export DOCKER_BUILDKIT=0 # the classic builder: no buildx here, and it needs no registry

log() { printf '[base] %s\n' "$*" >&2; }
have_image() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }
mkdir -p "$IMAGES_CACHE"

# debootstrap mounts proc and sys inside the target: unmount them, and never let rm cross into one.
discard_rootfs() {
    findmnt -rn -o TARGET | grep "^$1/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$1"
}

build_debian() {
    if have_image "$DEBIAN_IMAGE"; then
        log "$DEBIAN_IMAGE exists, skipping debootstrap"
        return
    fi
    local tarball=$IMAGES_CACHE/debian-$DEBIAN_SUITE-minbase.tar
    if [ ! -s "$tarball" ]; then
        [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
        local tmp
        tmp=$(mktemp -d "$IMAGES_CACHE/rootfs.XXXXXX")
        trap "discard_rootfs '$tmp'" EXIT
        log "debootstrap --variant=minbase $DEBIAN_SUITE ($PACKAGES) from $DEBIAN_MIRROR"
        debootstrap --variant=minbase --include="$PACKAGES" "$DEBIAN_SUITE" "$tmp/root" "$DEBIAN_MIRROR"
        cat >"$tmp/root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main
EOF
        chroot "$tmp/root" apt-get clean
        rm -rf "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/var/cache/apt/*.bin \
            "$tmp/root"/var/log/*.log "$tmp/root"/var/log/apt/* "$tmp/root"/tmp/* \
            "$tmp/root"/etc/hostname "$tmp/root"/etc/resolv.conf
        tar --numeric-owner --xattrs -C "$tmp/root" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        discard_rootfs "$tmp"
        trap - EXIT
        log "rootfs kept in $tarball ($(du -h "$tarball" | cut -f1))"
    else
        log "using cached rootfs $tarball"
    fi
    log "docker import -> $DEBIAN_IMAGE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$DEBIAN_IMAGE" >/dev/null
    docker run --rm "$DEBIAN_IMAGE" python3 --version
}

build_freqtrade() {
    if have_image "$FREQTRADE_IMAGE"; then
        log "$FREQTRADE_IMAGE exists, skipping"
        return
    fi
    local wheels=$IMAGES_CACHE/wheels/freqtrade-$FREQTRADE_VERSION-$DEBIAN_SUITE
    "$images/wheels.sh" "$DEBIAN_IMAGE" "$wheels" "freqtrade==$FREQTRADE_VERSION"
    log "docker build -> $FREQTRADE_IMAGE (context: $wheels)"
    docker build --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        --build-arg "FREQTRADE_VERSION=$FREQTRADE_VERSION" \
        -f "$here/Dockerfile" -t "$FREQTRADE_IMAGE" "$wheels"
    # The intermediate stage holds the wheels and a second copy of ~/.local; it is not needed.
    docker image prune -f --filter label=org.ftpool.stage=freqtrade-python-deps >/dev/null
    docker run --rm "$FREQTRADE_IMAGE" --version
}

build_debian
[ "$what" = debian ] || build_freqtrade
