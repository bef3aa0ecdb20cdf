#!/bin/bash
# Build the Rekam kiosk SD-card image: Raspberry Pi OS Lite (64-bit) from pi-gen's stages
# 0-2, then our stage (image-build/stage-kiosk) with the kiosk from this checkout.
#   sudo image-build/build.sh [--release bookworm|trixie] [--work DIR]
# Needs root, git, network to the Raspberry Pi archive and PyPI, pi-gen's host packages
# (its `depends` file) and, on an x86_64 host, qemu-user-static with binfmt_misc.
# The image lands in DIR/pi-gen/deploy (DIR: image-build/work).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
release=bookworm
work="${here}/work"

usage() {
    echo "usage: $0 [--release bookworm|trixie] [--work DIR]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --release) release="$2" ;;
        --work) work="$(realpath -m "$2")" ;;
        *) usage ;;
    esac
    shift 2
done

# pi-gen pinned to the tag (and commit) of a Raspberry Pi OS release, 64-bit (arm64)
case "${release}" in
    bookworm) # Python 3.11
        pi_gen_tag=2026-06-18-raspios-bookworm-arm64
        pi_gen_commit=d7a31c6aa09f4b867902c51da2b45807c0a1709e
        ;;
    trixie) # Python 3.13
        pi_gen_tag=2026-06-18-raspios-trixie-arm64
        pi_gen_commit=ca8aeed0ae300c2a89f55ce9617d5f96a27e99e5
        ;;
    *) usage ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: pi-gen needs root (it mounts, chroots and makes loop devices)" >&2
    exit 1
fi

pi_gen="${work}/pi-gen"
rm -rf "${pi_gen}"
mkdir -p "${work}"
git clone --quiet --depth 1 --branch "${pi_gen_tag}" https://github.com/RPi-Distro/pi-gen "${pi_gen}"
if [ "$(git -C "${pi_gen}" rev-parse HEAD)" != "${pi_gen_commit}" ]; then
    echo "$0: pi-gen's tag ${pi_gen_tag} is not commit ${pi_gen_commit} any more" >&2
    exit 1
fi
# only our stage is exported as an image, not stage2's plain Raspberry Pi OS Lite
touch "${pi_gen}/stage2/SKIP_IMAGES"

"${here}/prepare-stage.sh" "${work}/stage-kiosk" "${PYTHON:-python3}"

# The first user (sudo, console only: SSH is off) gets a password from the environment,
# or a new random one saved beside the image.
deploy="${pi_gen}/deploy"
mkdir -p "${deploy}"
password="${KIOSK_TECHNICIAN_PASSWORD:-}"
if [ -z "${password}" ]; then
    password="$(head -c 18 /dev/urandom | base64)"
    (umask 077 && echo "${password}" >"${deploy}/technician-password.txt")
fi

cat >"${pi_gen}/config" <<EOF
IMG_NAME=rekam-kiosk-${release}-arm64
RELEASE=${release}
STAGE_LIST="stage0 stage1 stage2 ${work}/stage-kiosk"
DEPLOY_COMPRESSION=xz
TARGET_HOSTNAME=rekam-kiosk
LOCALE_DEFAULT=id_ID.UTF-8
KEYBOARD_KEYMAP=us
KEYBOARD_LAYOUT="English (US)"
TIMEZONE_DEFAULT=Asia/Jakarta
FIRST_USER_NAME=technician
FIRST_USER_PASS='${password}'
DISABLE_FIRST_BOOT_USER_RENAME=1
ENABLE_SSH=0
EOF

cd "${pi_gen}"
./build.sh -c config
echo "the image: $(ls "${deploy}"/*.img.xz)"
