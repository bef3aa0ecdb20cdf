#!/bin/bash
# pi-gen feeds this to `bash -e` inside the image (on_chroot); 00-run.sh has put the
# kiosk's wheel, the units and (for the CI harness) a wheelhouse in /var/cache/rekam-kiosk-install.
set -euo pipefail

install_dir=/var/cache/rekam-kiosk-install
venv=/opt/rekam-kiosk/venv

# the kiosk's user and the groups its devices need (video: cameras; dialout: serial
# fingerprint readers; gpio: lights and buttons; render: the GPU; input: the
# touchscreen; audio: the voice); Raspberry Pi OS has most, plain Debian not all
groups=(video dialout gpio render input audio)
for group in "${groups[@]}"; do
    getent group "${group}" >/dev/null || groupadd --system "${group}"
done
if ! getent passwd kiosk >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/rekam-kiosk --no-create-home \
        --shell /usr/sbin/nologin --comment "Rekam kiosk" kiosk
fi
usermod --append --groups "$(
    IFS=,
    echo "${groups[*]}"
)" kiosk

# The kiosk in its own environment that also sees the system's packages: picamera2 and
# lgpio come from the Raspberry Pi archive, built for the Pi, and are not on PyPI.
python3 -m venv --system-site-packages "${venv}"
pip=("${venv}/bin/pip" install --no-cache-dir --disable-pip-version-check --no-input)
if [ -n "$(find "${install_dir}/wheelhouse" -mindepth 1 -print -quit)" ]; then
    # a wheelhouse (the CI harness): exactly its wheels and the kiosk, nothing from an
    # index, nothing resolved (`pip check` tells what is missing)
    "${pip[@]}" --no-index --no-deps "${install_dir}"/wheelhouse/*.whl "${install_dir}"/wheels/*.whl
else
    # the kiosk's pinned dependencies from PyPI; wsq has no arm64 wheel: built here from
    # its source (wsq-source), then found by pip in wheels/ before PyPI's source
    "${install_dir}/wsq-source" "${install_dir}/wsq" "${venv}/bin/python"
    "${venv}/bin/pip" wheel --no-cache-dir --disable-pip-version-check --no-deps \
        --wheel-dir "${install_dir}/wheels" "${install_dir}/wsq/wsq-0.9"
    "${pip[@]}" --find-links "${install_dir}/wheels" "${install_dir}"/wheels/rekam_kiosk-*.whl
fi
"${venv}/bin/kiosk" --version
# The system's picamera2 and lgpio must import in the kiosk's environment, where the
# kiosk's numpy (2.x, pinned) hides the system's (1.x on bookworm) that picamera2's
# compiled helpers were built with: better the build fails than a station's camera.
for module in picamera2 lgpio; do
    if python3 -c "import ${module}" 2>/dev/null; then
        "${venv}/bin/python" -c "import ${module}"
    fi
done

# Kivy's settings for the kiosk's user: Kivy's defaults, one touch provider only
install -d -m 755 /usr/local/share/rekam-kiosk
"${venv}/bin/python" "${install_dir}/kivy_config.py" /usr/local/share/rekam-kiosk/kivy-config.ini

# the station file lives on the data partition, so provisioning survives a read-only root
if [ -d /etc/rekam-kiosk ] && [ ! -L /etc/rekam-kiosk ]; then
    rmdir /etc/rekam-kiosk
fi
ln -sfn /var/lib/rekam-kiosk/config /etc/rekam-kiosk

# every unit from the checkout's systemd/ (whatever it holds), and the data partition's
for unit in "${install_dir}"/units/*.service; do
    systemctl enable "$(basename "${unit}")"
done

# no SSH on a station: masked, so neither /boot/firmware/ssh nor raspi-config turns it on
for unit in ssh.service ssh.socket sshswitch.service regenerate_ssh_host_keys.service; do
    systemctl mask "${unit}"
done
# the root is not grown at first boot (00-run.sh): the data partition takes the space
if [ -e /usr/lib/systemd/system/rpi-resize.service ]; then
    systemctl disable rpi-resize.service
fi

rm -rf "${install_dir}"
