#!/bin/bash
# pi-gen runs this first: start from stage2's root (Raspberry Pi OS Lite), as every stage does.
set -euo pipefail
if [ ! -d "${ROOTFS_DIR}" ]; then
    copy_previous
fi
