#!/usr/bin/env bash
# A wheelhouse that installs offline into a Docker image, built on the host (which reaches
# PyPI; docker builds here never touch the network).
#
#   images/wheels.sh IMAGE OUTDIR              ftpool (from this repo) + its runtime dependencies
#   images/wheels.sh IMAGE OUTDIR REQ [REQ...] the given requirements instead (no ftpool)
#
# Layout of OUTDIR:
#   *.whl               the dependencies (every wheel that `pip install -r requirements.txt` needs)
#   requirements.txt    the top-level requirements (pyproject's [project].dependencies, or REQ...)
#   ftpool/ftpool-*.whl the project itself (`pip wheel --no-deps .`); a separate directory so an
#                       image can install the dependencies in a layer that survives code changes
#
# The wheels are for IMAGE's Python: `pip wheel` when it is the host's version, otherwise
# `pip download --only-binary=:all:` for IMAGE's version, architecture and glibc (a dependency
# with no wheel at all is built on the host, and used if it is pure Python).
# Dependencies are resolved once and kept while the inputs (requirements, Python, platform)
# are the same; REFRESH=1 resolves them again. The ftpool wheel is rebuilt on every run
# (reproducibly: the same source gives the same bytes, so docker's layer cache still hits).
# Env: PYTHON (host interpreter, default python3), REFRESH=1.
set -euo pipefail

usage() {
    echo "usage: $0 IMAGE OUTDIR [REQUIREMENT...]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
image=$1
outdir=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}

log() { printf '[wheels] %s\n' "$*" >&2; }

# What the image runs: "3.13 glibc 2.36 x86_64".
read -r img_py img_libc img_libc_ver img_arch < <(
    docker run --rm --entrypoint python3 "$image" -c \
        'import platform, sys; l = platform.libc_ver(); print("%d.%d" % sys.version_info[:2], l[0] or "-", l[1] or "-", platform.machine())'
)
host_py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
host_arch=$("$PYTHON" -c 'import platform; print(platform.machine())')
log "$image: Python $img_py, $img_libc $img_libc_ver, $img_arch (host: Python $host_py, $host_arch)"

mkdir -p "$outdir/ftpool"
outdir=$(cd "$outdir" && pwd)

if [ $# -gt 0 ]; then
    with_project=0
    printf '%s\n' "$@" >"$outdir/requirements.txt.new"
else
    with_project=1
    "$PYTHON" - "$repo/pyproject.toml" >"$outdir/requirements.txt.new" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
EOF
fi
mv "$outdir/requirements.txt.new" "$outdir/requirements.txt"

if [ "$img_py" = "$host_py" ] && [ "$img_arch" = "$host_arch" ]; then
    mode=wheel
else
    mode=download
    [ "$img_libc" = glibc ] || { log "only glibc images are supported (got $img_libc)"; exit 1; }
    # Every manylinux tag the image's glibc accepts (pip does not expand manylinux_2_X itself).
    platforms=(--platform any --platform "manylinux2014_$img_arch")
    glibc_minor=${img_libc_ver#*.}
    for ((minor = 17; minor <= glibc_minor; minor++)); do
        platforms+=(--platform "manylinux_2_${minor}_$img_arch")
    done
fi

key=$(printf '%s\n' "$mode" "$img_py" "$img_libc" "$img_libc_ver" "$img_arch" |
    cat - "$outdir/requirements.txt" | sha256sum | cut -c1-16)
if [ "${REFRESH:-0}" != 1 ] && [ "$(cat "$outdir/.deps-key" 2>/dev/null)" = "$key" ]; then
    log "dependencies unchanged ($(ls "$outdir"/*.whl | wc -l) wheels in $outdir), not resolving again"
else
    log "resolving dependencies ($mode) into $outdir"
    rm -f "$outdir"/*.whl "$outdir/.deps-key"
    if [ "$mode" = wheel ]; then
        "$PYTHON" -m pip wheel --progress-bar off -w "$outdir" -r "$outdir/requirements.txt"
    else
        # A dependency published as a source distribution only (sdnotify) has no wheel to
        # download: build it on the host, and use it if it is pure Python (any Python 3).
        for attempt in $(seq 20); do
            if "$PYTHON" -m pip download --progress-bar off --only-binary=:all: \
                --python-version "$img_py" --implementation cp "${platforms[@]}" \
                --find-links "$outdir" -d "$outdir" -r "$outdir/requirements.txt" \
                2> >(tee "$outdir/.pip-errors" >&2); then
                break
            fi
            sdist=$(sed -n 's/^ERROR: No matching distribution found for \(.*\)$/\1/p' \
                "$outdir/.pip-errors" | head -n 1)
            [ -n "$sdist" ] && [ "$attempt" -lt 20 ] || { log "cannot resolve for Python $img_py"; exit 1; }
            log "no wheel of $sdist for Python $img_py: building it on the host"
            "$PYTHON" -m pip wheel --progress-bar off -q --no-deps -w "$outdir/.host" "$sdist"
            for whl in "$outdir"/.host/*.whl; do
                case $whl in
                *-none-any.whl) mv "$whl" "$outdir/" ;;
                *) log "$(basename "$whl") is not pure Python: it cannot serve Python $img_py"; exit 1 ;;
                esac
            done
        done
        rm -rf "$outdir/.pip-errors" "$outdir/.host"
    fi
    echo "$key" >"$outdir/.deps-key"
fi

rm -f "$outdir"/ftpool/*.whl
if [ "$with_project" = 1 ]; then
    # Build from a clean copy of the source: setuptools' in-tree build/ keeps modules that were
    # deleted from the source and would put them in the wheel. Tracked and new (not ignored)
    # files count; tests, images and tooling are not part of the package.
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard -- \
        pyproject.toml 'README*' 'LICENSE*' 'setup.*' MANIFEST.in common agent controller |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf - | tar -C "$src" -xf -)
    log "building the ftpool wheel"
    # SOURCE_DATE_EPOCH fixes the zip timestamps: unchanged source, identical wheel.
    SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel --progress-bar off -q --no-deps \
        -w "$outdir/ftpool" "$src"
fi
log "wheelhouse ready: $outdir ($(ls "$outdir"/*.whl | wc -l) dependency wheels$(
    [ "$with_project" = 1 ] && echo ", $(basename "$outdir"/ftpool/*.whl)"))"
