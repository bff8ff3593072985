#!/usr/bin/env bash
# Make sure this machine can build and run the images: docker.io and debootstrap installed
# (iproute2 and util-linux for the multi-node swarm tests),
# dockerd running. Idempotent; needs root for the parts it has to do. A daemon that cannot
# be started is an error, never a skip.
set -euo pipefail

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The multi-node swarm tests (tests/e2e/docker/swarm_nodes.py): namespaces and veths.
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
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
