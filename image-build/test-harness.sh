#!/bin/bash
# Run image-build/stage-kiosk as pi-gen would, without the Raspberry Pi archive: on a
# Debian root (debootstrap, arm64, minbase) standing in for pi-gen's stage2, with pi-gen's
# on_chroot (a chroot with /proc, /sys, /dev, /run and /tmp mounted, running `bash -e` on
# its stdin) and its sub-stage order (NN-packages, NN-run.sh, NN-run-chroot.sh).
#   image-build/test-harness.sh WORK [PYTHON]
# WORK: an empty folder (everything goes there: the root in WORK/rootfs); PYTHON: one
# with pip (default python3), for the kiosk's wheel and the aarch64 wheelhouse.
# Needs root, debootstrap, qemu-user-static with qemu-aarch64 registered in binfmt_misc
# with the F flag (update-binfmts --enable qemu-aarch64), and deb.debian.org and PyPI.
# HARNESS_DEBOOTSTRAP_CACHE: a folder to keep debootstrap's download in between runs.
#
# What differs from a real build (docs/image-build.md):
# - packages only in the Raspberry Pi archive are skipped: RPI_ONLY_PACKAGES below;
# - the kiosk's dependencies come from a wheelhouse of aarch64 wheels downloaded on the
#   host (KIOSK_WHEELHOUSE) and are installed as they are, without resolving: wsq has no
#   aarch64 wheel and is compiled only in the real build, so the packages needed only for
#   that compiler (COMPILER_PACKAGES) are skipped too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "${here}")"
work="$(realpath "${1:?usage: test-harness.sh WORK [PYTHON]}")"
python="${2:-python3}"
release=bookworm
python_version=3.11
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

RPI_ONLY_PACKAGES=(python3-picamera2 python3-lgpio)
COMPILER_PACKAGES=(build-essential python3-dev)
# what pi-gen's stages 0-2 give our stage and Debian has (stage2 installs python3-venv)
STAGE2_STAND_INS=(systemd systemd-sysv udev python3-venv)

export ROOTFS_DIR="${work}/rootfs"
export LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

say() { printf '[%s] harness: %s\n' "$(date +%T)" "$*" >&2; }

mount_once() { # TYPE-OR-BIND SOURCE TARGET
    local target="${ROOTFS_DIR}/$3"
    mountpoint -q "${target}" && return
    if [ "$1" = bind ]; then
        mount --bind "$2" "${target}"
    else
        mount -t "$1" "$2" "${target}"
    fi
}
# everything mounted under the root, deepest first (also what a run.sh may have mounted)
unmount_all() {
    local target
    awk -v root="${ROOTFS_DIR}/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts \
        | sort -r | while read -r target; do
        umount "${target}" || umount --lazy "${target}"
    done
}
trap unmount_all EXIT

# pi-gen's on_chroot: the image's root with the kernel's file systems, bash -e on stdin
on_chroot() {
    mount_once proc proc proc
    mount_once bind /dev dev
    mount_once bind /dev/pts dev/pts
    mount_once bind /sys sys
    mount_once tmpfs tmpfs run
    mount_once tmpfs tmpfs tmp
    chroot "${ROOTFS_DIR}" /bin/bash -e
}
copy_previous() {
    echo "harness: there is no previous stage; the Debian root stands in for stage2" >&2
    return 1
}
export -f on_chroot mount_once copy_previous

# pi-gen's NN-packages: words, comments removed; here without those we cannot have
packages_of() { # FILE
    local package skip
    sed -e 's/#.*//' "$1" | tr -s '[:space:]' '\n' | while read -r package; do
        [ -n "${package}" ] || continue
        for skip in "${RPI_ONLY_PACKAGES[@]}" "${COMPILER_PACKAGES[@]}"; do
            [ "${package}" = "${skip}" ] && continue 2
        done
        echo "${package}"
    done
}

apt_install() {
    on_chroot <<EOF
apt-get -o Acquire::Retries=3 -o Dpkg::Options::=--force-unsafe-io install -y -q --no-install-recommends $*
EOF
}

# pi-gen's run_stage, for our stage: prerun.sh, then each sub-stage's steps in order
run_stage() { # STAGE_DIR
    local stage_dir="$1" sub_stage i
    (cd "${stage_dir}" && ./prerun.sh)
    for sub_stage in "${stage_dir}"/*/; do
        for i in $(seq -w 0 99); do
            if [ -f "${sub_stage}/${i}-packages" ]; then
                say "${i}-packages, without ${RPI_ONLY_PACKAGES[*]} (Raspberry Pi archive only)" \
                    "and ${COMPILER_PACKAGES[*]} (for wsq, not compiled here)"
                # shellcheck disable=SC2046 # one word per package
                apt_install $(packages_of "${sub_stage}/${i}-packages")
            fi
            if [ -f "${sub_stage}/${i}-run.sh" ]; then
                say "${i}-run.sh"
                (cd "${sub_stage}" && "./${i}-run.sh")
            fi
            if [ -f "${sub_stage}/${i}-run-chroot.sh" ]; then
                say "${i}-run-chroot.sh"
                on_chroot <"${sub_stage}/${i}-run-chroot.sh"
            fi
        done
    done
}

mkdir -p "${work}"

say "the stage, with the kiosk's wheel, from this checkout"
"${here}/prepare-stage.sh" "${work}/stage-kiosk" "${python}"

say "the aarch64 wheelhouse for Python ${python_version} (without wsq: no aarch64 wheel)"
export KIOSK_WHEELHOUSE="${work}/wheelhouse"
"${python}" - "${repo}/pyproject.toml" >"${work}/requirements.txt" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as file:
    for requirement in tomllib.load(file)["project"]["dependencies"]:
        if not requirement.startswith("wsq"):
            print(requirement)
EOF
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do # bookworm's glibc is 2.36
    platforms+=(--platform "manylinux_2_${minor}_aarch64")
done
"${python}" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    "${platforms[@]}" --python-version "${python_version}" --implementation cp \
    --dest "${KIOSK_WHEELHOUSE}" --requirement "${work}/requirements.txt"

say "debootstrap ${release} arm64 minbase"
tarball_args=()
if [ -n "${HARNESS_DEBOOTSTRAP_CACHE:-}" ]; then
    mkdir -p "${HARNESS_DEBOOTSTRAP_CACHE}"
    tarball="${HARNESS_DEBOOTSTRAP_CACHE}/${release}-arm64-minbase.tar.gz"
    [ -f "${tarball}" ] || debootstrap --arch=arm64 --variant=minbase --make-tarball="${tarball}" \
        "${release}" "${work}/tarball-work" "${mirror}" >/dev/null
    tarball_args=(--unpack-tarball="${tarball}")
fi
debootstrap --arch=arm64 --variant=minbase --foreign "${tarball_args[@]}" \
    "${release}" "${ROOTFS_DIR}" "${mirror}" >/dev/null
# dpkg's fsyncs cost minutes under emulation and buy nothing in a throw-away root
echo force-unsafe-io >"${ROOTFS_DIR}/etc/dpkg/dpkg.cfg.d/harness-unsafe-io"
chroot "${ROOTFS_DIR}" /debootstrap/debootstrap --second-stage >/dev/null

say "stand-ins for pi-gen's stages 0-2: ${STAGE2_STAND_INS[*]}, config.txt, cmdline.txt, fstab"
on_chroot <<<"apt-get update -q"
apt_install "${STAGE2_STAND_INS[@]}"
mkdir -p "${ROOTFS_DIR}/boot/firmware"
printf '# a stand-in for pi-gen stage1 config.txt\ndtoverlay=vc4-kms-v3d\narm_64bit=1\n\n[all]\n' \
    >"${ROOTFS_DIR}/boot/firmware/config.txt"
echo "console=serial0,115200 console=tty1 root=ROOTDEV rootfstype=ext4 fsck.repair=yes" \
    "rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot" \
    >"${ROOTFS_DIR}/boot/firmware/cmdline.txt"
printf 'proc /proc proc defaults 0 0\nBOOTDEV /boot/firmware vfat defaults 0 2\nROOTDEV / ext4 defaults,noatime 0 1\n' \
    >"${ROOTFS_DIR}/etc/fstab"

say "the stage"
run_stage "${work}/stage-kiosk"
say "done: ${ROOTFS_DIR}"
