#!/bin/sh
# Pool container entrypoint: hide the pool token from everything supervisord starts, then
# become supervisord (PID 1). Bots inherit supervisord's environment, so POOL_TOKEN must not be
# in it; the agent reads the token from POOL_TOKEN_FILE (root-only) instead.
set -eu

mkdir -p /run/ftpool /var/run/supervisor
chmod 0700 /run/ftpool /var/run/supervisor

if [ -n "${POOL_TOKEN+set}" ]; then
    (umask 077 && printf '%s' "$POOL_TOKEN" >/run/ftpool/pool-token)
    unset POOL_TOKEN
    export POOL_TOKEN_FILE=/run/ftpool/pool-token
fi

# supervisord refuses to start when it cannot raise RLIMIT_NOFILE/NPROC to minfds/minprocs, and
# a container cannot raise a hard limit (give the container --ulimit nofile=65536 to get them).
set --
limit() { awk -v name="$1" 'index($0, name) == 1 { print $(NF - 1) }' /proc/self/limits; }
hard=$(limit "Max open files")
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then
    echo "entrypoint: open-files hard limit is $hard (< minfds 65536), using minfds=$hard" >&2
    set -- "$@" --minfds="$hard"
fi
hard=$(limit "Max processes")
if [ "$hard" != unlimited ] && [ "$hard" -lt 4096 ]; then
    echo "entrypoint: processes hard limit is $hard (< minprocs 4096), using minprocs=$hard" >&2
    set -- "$@" --minprocs="$hard"
fi

exec supervisord -c /etc/supervisor/supervisord.conf "$@"
