#!/usr/bin/env bash
# Make sure this machine can run the browser tests: Debian's chromium and chromedriver
# (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent; installs with apt, needs root
# for that. Nothing is downloaded from anywhere else (Selenium Manager stays offline).
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
    echo "chromium-up: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
chromium --version
chromedriver --version
