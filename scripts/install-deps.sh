#!/usr/bin/env bash
# Installs the Debian (bookworm) packages tycho builds and tests with; does
# nothing when they are all present. Uses sudo when not run as root.
set -euo pipefail
packages=(build-essential cmake pkg-config libvips-dev libcjson-dev libxxhash-dev clang libclang-rt-14-dev python3
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user python3-pytest libmicrohttpd-dev nodejs)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
