"""Provisioning a station: ``kiosk provision`` and the first-boot screen.

- :mod:`kiosk.provision.protocol`: the pairing exchange's codes, key derivation and MACs
  (shared with the hub's side, hub/pairing.py);
- :mod:`kiosk.provision.client`: the station's pairing request over HTTPS;
- :mod:`kiosk.provision.station`: keys, the station file, the hub's key and certificate,
  the "provisioned" marker and the refusal of simulated modules on a provisioned station;
- :mod:`kiosk.provision.commands`: the ``kiosk provision`` command.

Nothing here imports Kivy; the screen is kiosk/screens/provision/.
"""
