#!/usr/bin/env bash
# Installs the npm packages the server tests use (tests/server/node_modules,
# from package-lock.json: moondream@0.2.0, openai, sharp 0.34 through an
# override, since moondream's own sharp ^0.32 downloads libvips at install
# time). Installs npm from Debian first when it is missing (bookworm's nodejs
# package has no npm). Does nothing when node_modules matches the lock file.
# Run by .ci/run, and by tests/cli/test_server*.sh (under flock) when needed.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing npm (Debian)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
stamp=node_modules/.tycho-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
    exit 0
fi
echo "npm ci in tests/server"
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
