"""Done: the receipt, with the enrollment id as text and as a QR code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import qrcode
from kivy.properties import NumericProperty, StringProperty

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, moves_forward, texture_from_array

ONE_LINE_CHARS = 24  # a receipt number this long still reads well on one line


def receipt_lines(enrollment_id: str) -> str:
    """A long id on two lines, the station's part and the date and number, so
    a long station id still fits; the QR code holds it whole."""
    station, _, rest = enrollment_id.rpartition("-")
    station, _, date = station.rpartition("-")
    if len(enrollment_id) <= ONE_LINE_CHARS or not station:
        return enrollment_id
    return f"{station}-\n{date}-{rest}"


def fitting_font_size(width: float, text: str, largest: float) -> float:
    """The largest monospace size, up to ``largest``, at which every line of
    ``text`` fits ``width`` (a Roboto Mono glyph is 0.6 em wide)."""
    longest = max((len(line) for line in text.splitlines()), default=1)
    return min(largest, width / (0.61 * max(longest, 1)))


def qr_image(text: str, scale: int = 8) -> np.ndarray:
    """The QR code of ``text``: black modules on white, with the quiet zone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    modules = np.array(code.get_matrix(), dtype=bool)
    image = np.where(modules, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale), dtype=np.uint8))


class DoneScreen(KioskScreen):
    step = Step.DONE
    kv = Path(__file__).with_suffix(".kv")
    enrollment_id = StringProperty("")
    flagged = NumericProperty(0)  # fingers the operator must look at

    def entered(self) -> None:
        flow = self.flow
        self.enrollment_id = flow.saved_id or ""
        self.flagged = len(flow.enrollment.flagged_fingers) if flow.enrollment else 0
        texture = texture_from_array(qr_image(self.enrollment_id))
        texture.mag_filter = "nearest"  # keep the modules sharp when scaled
        self.ids.qr.texture = texture

    @moves_forward
    def finish(self) -> None:
        self.flow.finish()
