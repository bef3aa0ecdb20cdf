"""Write Kivy's config for the kiosk's user (run by 01-run-chroot.sh with the kiosk's Python):

    python kivy_config.py OUTPUT

Kivy's own defaults for the Kivy installed, written by that Kivy, so the file carries its
``config_version`` (with an older one, or a file missing options, Kivy "upgrades" it at
start and adds its default input providers back; a file without its defaults stops Kivy
at import). Then one touch provider only: mtdev reads the kernel's multitouch events
(protocol A or B) of every touchscreen probesysfs finds (the Raspberry Pi displays, USB
HID panels); hidinput or a mouse provider beside it would report each finger twice.
"""

from __future__ import annotations

import configparser
import io
import os
import sys
import tempfile

SETTINGS = {
    ("input", "mtdev_%(name)s"): "probesysfs,provider=mtdev",
    ("kivy", "log_enable"): "0",  # Kivy's log files would fill the data partition
    ("kivy", "exit_on_escape"): "0",
    ("graphics", "show_cursor"): "0",
}
HEADER = """\
; Kivy's settings for the Rekam kiosk's user: KIVY_HOME/config.ini links here (tmpfiles.d).
; Written by image-build's kivy_config.py: Kivy's defaults, with one touch provider.
"""


def main(output: str) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(KIVY_HOME=home, KIVY_NO_ARGS="1", KIVY_NO_CONSOLELOG="1")
        from kivy.config import Config  # here: Kivy reads KIVY_HOME when first imported

        for option in Config.options("input"):
            Config.remove_option("input", option)
        for (section, option), value in SETTINGS.items():
            Config.set(section, option, value)
        text = io.StringIO()
        configparser.RawConfigParser.write(Config, text)
    with open(output, "w", encoding="utf-8") as file:
        file.write(HEADER + text.getvalue())


if __name__ == "__main__":
    main(sys.argv[1])
