#!/bin/bash
# Run image-build/stage-kiosk as pi-gen would, without the Raspberry Pi archive: on a
# Debian root (debootstrap, arm64, minbase) standing in for pi-gen's stage2, with pi-gen's
# on_chroot (a chroot with /proc, /sys, /dev, /run and /tmp mounted, running `bash -e` on
# its stdin) and its sub-stage order (NN-packages, NN-run.sh, NN-run-chroot.sh).
#   image-build/test-harness.sh WORK [PYTHON]
# WORK: an empty folder (everything goes there: the root in WORK/rootfs); PYTHON: one
# with pip (default python3), for the kiosk's wheel and the aarch64 wheelhouse.
# Needs root, debootstrap, qemu-user-static with qemu-aarch64 registered in binfmt_misc
# with the F flag (update-binfmts --enable qemu-aarch64), gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross, PYTHON of the image's version (3.11), deb.debian.org and PyPI.
# HARNESS_DEBOOTSTRAP_CACHE: a folder to keep debootstrap's download in between runs.
# HARNESS_REUSE_ROOT=1: skip debootstrap and run the stage on WORK/rootfs again.
#
# What differs from a real build (docs/image-build.md):
# - packages only in the Raspberry Pi archive are skipped: RPI_ONLY_PACKAGES below;
# - the kiosk's dependencies come from a wheelhouse of aarch64 wheels (KIOSK_WHEELHOUSE),
#   installed as they are: PyPI's, downloaded on the host, and wsq's, which PyPI lacks,
#   cross-compiled on the host (aarch64-linux-gnu-gcc) from the source the image compiles
#   (files/wsq-source), in seconds instead of minutes under emulation; so the packages
#   the image needs only to compile it (COMPILER_PACKAGES) are skipped.
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
# this machine's pip settings are not the image's
while read -r name; do unset "${name}"; done < <(compgen -e | grep '^PIP_' || true)

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
# on any exit: the host-side preparation stopped, nothing left mounted
finish() {
    if [ -n "${prepared:-}" ]; then
        kill "${prepared}" 2>/dev/null || true
    fi
    unmount_all
}
trap finish EXIT

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
    on_chroot <<<"apt-get -o Acquire::Retries=3 -o Dpkg::Options::=--force-unsafe-io \
        install -y -q --no-install-recommends $*"
}

# pi-gen's run_stage, for our stage: prerun.sh, then each sub-stage's steps in order
run_stage() { # STAGE_DIR
    local stage_dir="$1" sub_stage i
    (cd "${stage_dir}" && ./prerun.sh)
    for sub_stage in "${stage_dir}"/*/; do
        for i in $(seq -w 0 99); do
            if [ -f "${sub_stage}/${i}-packages" ]; then
                say "${i}-packages, without ${RPI_ONLY_PACKAGES[*]} (Raspberry Pi archive only)" \
                    "and ${COMPILER_PACKAGES[*]} (only to compile wsq: cross-compiled here)"
                # shellcheck disable=SC2046 # one word per package
                apt_install $(packages_of "${sub_stage}/${i}-packages")
            fi
            if [ -x "${sub_stage}/${i}-run.sh" ]; then
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

# on the host, while debootstrap runs: the stage with the kiosk's wheel, and the wheelhouse
prepare_on_host() {
    say "the stage, with the kiosk's wheel, from this checkout"
    "${here}/prepare-stage.sh" "${work}/stage-kiosk" "${python}"
    say "the aarch64 wheelhouse for Python ${python_version} (without wsq: no aarch64 wheel)"
    "${python}" -c 'import sys, tomllib
for requirement in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    if not requirement.startswith("wsq"):
        print(requirement)' "${repo}/pyproject.toml" >"${work}/requirements.txt"
    local platforms=(--platform manylinux2014_aarch64) minor
    for minor in $(seq 17 36); do # bookworm's glibc is 2.36
        platforms+=(--platform "manylinux_2_${minor}_aarch64")
    done
    "${python}" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        "${platforms[@]}" --python-version "${python_version}" --implementation cp \
        --dest "${KIOSK_WHEELHOUSE}" --requirement "${work}/requirements.txt"
    "${work}/stage-kiosk/00-kiosk/files/wsq-source" "${work}/wsq" "${python}"
}

# wsq for aarch64, compiled on the host against the image's Python headers
cross_compile_wsq() {
    say "wsq cross-compiled for aarch64"
    local headers="${work}/python-headers" tag="${python_version/./}"
    on_chroot <<<"cd /var/tmp && apt-get download -q libpython${python_version}-dev"
    dpkg-deb -x "${ROOTFS_DIR}"/var/tmp/libpython"${python_version}"-dev_*.deb "${headers}"
    rm "${ROOTFS_DIR}"/var/tmp/libpython"${python_version}"-dev_*.deb
    CC=aarch64-linux-gnu-gcc LDSHARED="aarch64-linux-gnu-gcc -shared" \
        CFLAGS="-I${headers}/usr/include/python${python_version} -I${headers}/usr/include" \
        SETUPTOOLS_EXT_SUFFIX=".cpython-${tag}-aarch64-linux-gnu.so" \
        _PYTHON_HOST_PLATFORM=linux-aarch64 \
        "${python}" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --wheel-dir "${KIOSK_WHEELHOUSE}" "${work}/wsq/wsq-0.9"
}

# COMMAND's output in WORK/debootstrap.log, its end shown if it fails
logged() {
    "$@" >>"${work}/debootstrap.log" 2>&1 || {
        tail -n 20 "${work}/debootstrap.log" >&2
        return 1
    }
}

# the root of pi-gen's stage2, as far as our stage needs it and Debian has it
make_root() {
    say "debootstrap ${release} arm64 minbase"
    local tarball_args=() tarball
    if [ -n "${HARNESS_DEBOOTSTRAP_CACHE:-}" ]; then
        mkdir -p "${HARNESS_DEBOOTSTRAP_CACHE}"
        tarball="${HARNESS_DEBOOTSTRAP_CACHE}/${release}-arm64-minbase.tar.gz"
        [ -f "${tarball}" ] || logged debootstrap --arch=arm64 --variant=minbase \
            --make-tarball="${tarball}" "${release}" "${work}/tarball-work" "${mirror}"
        tarball_args=(--unpack-tarball="${tarball}")
    fi
    logged debootstrap --arch=arm64 --variant=minbase --foreign "${tarball_args[@]}" \
        "${release}" "${ROOTFS_DIR}" "${mirror}"
    # dpkg's fsyncs cost minutes under emulation and buy nothing in a throw-away root
    echo force-unsafe-io >"${ROOTFS_DIR}/etc/dpkg/dpkg.cfg.d/harness-unsafe-io"
    logged chroot "${ROOTFS_DIR}" /debootstrap/debootstrap --second-stage

    say "stand-ins for pi-gen's stages 0-2: ${STAGE2_STAND_INS[*]}, config.txt, cmdline.txt, fstab"
    # ca-certificates' hash links take minutes under emulation, and nothing here uses TLS
    on_chroot <<<"dpkg-divert --quiet --local --rename --add /usr/sbin/update-ca-certificates
        ln -s /bin/true /usr/sbin/update-ca-certificates
        apt-get update -q"
    apt_install "${STAGE2_STAND_INS[@]}"
    mkdir -p "${ROOTFS_DIR}/boot/firmware"
    printf '# a stand-in for pi-gen stage1 config.txt\ndtoverlay=vc4-kms-v3d\n\n[all]\n' \
        >"${ROOTFS_DIR}/boot/firmware/config.txt"
    echo "console=serial0,115200 console=tty1 root=ROOTDEV rootfstype=ext4 fsck.repair=yes" \
        "rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot" \
        >"${ROOTFS_DIR}/boot/firmware/cmdline.txt"
    printf '%s\n' "proc /proc proc defaults 0 0" "BOOTDEV /boot/firmware vfat defaults 0 2" \
        "ROOTDEV / ext4 defaults,noatime 0 1" >"${ROOTFS_DIR}/etc/fstab"
}

if [ "$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "${python_version}" ]; then
    echo "test-harness.sh: ${python} is not Python ${python_version}, the image's" >&2
    exit 1
fi
mkdir -p "${work}"
export KIOSK_WHEELHOUSE="${work}/wheelhouse"
prepare_on_host &
prepared=$!
if [ -n "${HARNESS_REUSE_ROOT:-}" ] && [ -d "${ROOTFS_DIR}" ]; then
    say "reusing ${ROOTFS_DIR}"
else
    make_root
fi
wait "${prepared}"
prepared=""
cross_compile_wsq
say "the stage"
run_stage "${work}/stage-kiosk"
say "done: ${ROOTFS_DIR}"
