#!/bin/bash
# Copy the pi-gen stage (image-build/stage-kiosk) to DEST and fill its files/ from this
# checkout: the kiosk's wheel, the units in systemd/ (all of them), the guides in docs/.
# The checkout itself is never written to. Used by build.sh and test-harness.sh.
#   image-build/prepare-stage.sh DEST [PYTHON]   (PYTHON: one with pip; default python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "${here}")"
dest="${1:?usage: prepare-stage.sh DEST [PYTHON]}"
python="${2:-python3}"

rm -rf "${dest}"
mkdir -p "$(dirname "${dest}")"
cp -r "${here}/stage-kiosk" "${dest}"
files="${dest}/00-kiosk/files"
mkdir -p "${files}/wheels" "${files}/units" "${files}/docs"

# the wheel is built from a copy of the tracked files (as they are in the working tree),
# so no build/ or egg-info is left in the checkout and nothing untracked slips in
source_copy="$(mktemp -d)"
trap 'rm -rf "${source_copy}"' EXIT
git -C "${repo}" ls-files -z | tar -C "${repo}" --null -T - --ignore-failed-read -cf - \
    | tar -C "${source_copy}" -xf -
"${python}" -m pip wheel --quiet --no-deps --disable-pip-version-check \
    --wheel-dir "${files}/wheels" "${source_copy}"

cp "${repo}"/systemd/*.service "${files}/units/"
# the guides whole: Bahasa Indonesia (docs/id/), their screenshots, the example station file
git -C "${repo}" ls-files -z docs | tar -C "${repo}" --null -T - -cf - | tar -C "${files}" -xf -
