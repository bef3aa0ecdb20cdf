#!/bin/bash
# pi-gen runs this on the build host, in this folder, with ROOTFS_DIR the image's root:
# it puts the files in place; 01-run-chroot.sh then does what must run inside the image.
# files/ is filled by image-build/prepare-stage.sh: the kiosk's wheel (wheels/), the units
# from systemd/ (units/), the guides (docs/); KIOSK_WHEELHOUSE, if set, is a folder of
# aarch64 wheels to install from instead of PyPI (the CI harness sets it).
set -euo pipefail

install_dir="${ROOTFS_DIR}/var/cache/rekam-kiosk-install"
rm -rf "${install_dir}"
install -d -m 755 "${install_dir}/wheels" "${install_dir}/wheelhouse" "${install_dir}/units"
install -m 644 files/wheels/*.whl "${install_dir}/wheels/"
install -m 755 files/wsq-source "${install_dir}/"
if [ -n "${KIOSK_WHEELHOUSE:-}" ]; then
    find "${KIOSK_WHEELHOUSE}" -maxdepth 1 -type f -name '*.whl' \
        -exec install -m 644 -t "${install_dir}/wheelhouse/" {} +
fi

# every unit in the checkout's systemd/ (enabled by 01-run-chroot.sh), and the image's own
install -m 644 files/units/*.service "${install_dir}/units/"
install -m 644 files/units/*.service "${ROOTFS_DIR}/etc/systemd/system/"
install -m 644 files/rekam-data-partition.service "${install_dir}/units/"
install -m 644 files/rekam-data-partition.service "${ROOTFS_DIR}/etc/systemd/system/"
install -d -m 755 "${ROOTFS_DIR}/usr/local/lib/rekam-kiosk"
install -m 755 files/make-data-partition "${ROOTFS_DIR}/usr/local/lib/rekam-kiosk/"

# the guides the units' Documentation= lines point at
install -d -m 755 "${ROOTFS_DIR}/opt/rekam-kiosk/docs"
cp -r --no-preserve=mode,ownership files/docs/. "${ROOTFS_DIR}/opt/rekam-kiosk/docs/"

# Kivy's settings for the kiosk user, written by 01-run-chroot.sh (kivy_config.py)
install -m 644 files/kivy_config.py "${install_dir}/"
install -m 644 files/tmpfiles-rekam-kiosk.conf "${ROOTFS_DIR}/etc/tmpfiles.d/rekam-kiosk.conf"

# the hardware watchdog: the firmware turns it on, systemd feeds it (15 s is the
# BCM2835 watchdog's longest timeout) and lets it reboot a hung shutdown
install -d -m 755 "${ROOTFS_DIR}/etc/systemd/system.conf.d"
install -m 644 files/watchdog.conf "${ROOTFS_DIR}/etc/systemd/system.conf.d/rekam-watchdog.conf"
config_txt="${ROOTFS_DIR}/boot/firmware/config.txt"
if ! grep -q '^dtparam=watchdog=on' "${config_txt}"; then
    # config.txt ends in its [all] section, so the line applies to every model
    printf '\n# Rekam kiosk: the hardware watchdog (systemd feeds it)\n[all]\ndtparam=watchdog=on\n' \
        >>"${config_txt}"
fi

# the journal lives in RAM only: the root is read-only and the data partition is for packets
install -d -m 755 "${ROOTFS_DIR}/etc/systemd/journald.conf.d"
install -m 644 files/journald.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/rekam-kiosk.conf"

# the read-only root: Debian's overlayroot (what `raspi-config nonint do_overlayfs 0`
# installs too), but with recurse=0 so the data partition stays writable
install -m 644 files/overlayroot.local.conf "${ROOTFS_DIR}/etc/overlayroot.local.conf"

# the data partition, made at first boot in the rest of the card (make-data-partition)
if ! grep -q 'LABEL=rekam-data' "${ROOTFS_DIR}/etc/fstab"; then
    cat files/fstab-data >>"${ROOTFS_DIR}/etc/fstab"
fi

# The data partition takes the card's free space, so the root must not grow into it:
# bookworm grows the root from its first-boot init (raspberrypi-sys-mods' firstboot in
# the initramfs, triggered by init=...firstboot), trixie from the `resize` word.
cmdline="${ROOTFS_DIR}/boot/firmware/cmdline.txt"
sed -i -e 's# init=/usr/lib/raspberrypi-sys-mods/firstboot##' -e 's# resize\b##' "${cmdline}"
