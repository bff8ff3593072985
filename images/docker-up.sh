#!/usr/bin/env bash
# Make sure this machine can build and run the images: docker.io and debootstrap installed,
# dockerd running. Idempotent; needs root for the parts it has to do. A daemon that cannot
# be started is an error, never a skip.
set -euo pipefail

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "docker-up: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
    echo "docker-up: starting dockerd (log: /var/log/ftpool-dockerd.log)"
    nohup dockerd >/var/log/ftpool-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker-up: dockerd did not come up; see /var/log/ftpool-dockerd.log" >&2
    tail -n 20 /var/log/ftpool-dockerd.log >&2 || true
    exit 1
fi
docker version --format 'docker-up: Docker {{.Server.Version}} running'
