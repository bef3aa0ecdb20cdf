"""Fingerprint images in WSQ, the FBI/NIST codec for 500 ppi prints.

WSQ (Wavelet Scalar Quantization, FBI IAFIS-IC-0110) is what ANSI/NIST-ITL
records and national ID systems expect for fingerprint images scanned at
500 ppi. The codec here is NIST's own NBIS, through the ``wsq`` package, which
registers a ``"WSQ"`` format with Pillow (``import wsq``, then
``Image.save(buf, "WSQ")`` and ``Image.open``).

Bit rate: 0.75 bits per pixel, about 15:1 on a typical print, is the rate the
FBI specification and NBIS's ``cwsq`` prescribe for 500 ppi images (2.25 bpp,
about 5:1, is the other rate NBIS documents; it is for archives that can
afford three times the size). The ``wsq`` package 0.9 has that rate and
500 ppi compiled in: its C wrapper ignores what Pillow passes and always
encodes at 0.75 bpp with ``PPI 500`` in the NISTCOM comment. So
``encode_wsq`` accepts exactly those values and refuses any other rather than
write a file whose header lies. WSQ is specified for 500 ppi anyway: prints
scanned at 1000 ppi go in JPEG 2000, not WSQ.

Limits: 8-bit greyscale only, one channel. NBIS writes into an output buffer
the size of the raw image, so a tiny image (a few dozen pixels a side) does
not fit its own headers and tables (about 650 bytes) and fails; we require
``MIN_PRINT_SIDE`` (64 px, about 3 mm at 500 ppi) a side, as the fingerprint
quality check does, and at most ``MAX_IMAGE_SIDE``.
"""

from __future__ import annotations

import io

import numpy as np
import wsq  # noqa: F401  (registers the "WSQ" format with Pillow)
from PIL import Image

from kiosk.quality.inputs import MAX_IMAGE_SIDE, MIN_PRINT_SIDE, require_print

# The rate fixed in the ``wsq`` package's C wrapper: the FBI's 0.75 bpp (~15:1) for 500 ppi.
WSQ_BITRATE = 0.75
# The resolution the package writes into every file's NISTCOM comment.
WSQ_PPI = 500
SOI = b"\xff\xa0"  # WSQ start-of-image marker

__all__ = ["MAX_IMAGE_SIDE", "MIN_PRINT_SIDE", "SOI", "WSQ_BITRATE", "WSQ_PPI", "decode_wsq"]
__all__ += ["encode_wsq"]


def encode_wsq(image: np.ndarray, ppi: int = WSQ_PPI, bitrate: float = WSQ_BITRATE) -> bytes:
    """``image`` (2-D uint8 grayscale, ridges dark on light) as a WSQ file.

    Raises ValueError for anything that is not an 8-bit grayscale print of
    ``MIN_PRINT_SIDE``..``MAX_IMAGE_SIDE`` px a side, for a ``ppi`` or
    ``bitrate`` the codec cannot write (only 500 ppi at 0.75 bpp), and for any
    error of the encoder itself.
    """
    if ppi != WSQ_PPI:
        raise ValueError(
            f"WSQ is written at {WSQ_PPI} ppi only (the wsq package has it compiled in), "
            f"not {ppi} ppi"
        )
    if bitrate != WSQ_BITRATE:
        raise ValueError(
            f"WSQ is written at {WSQ_BITRATE} bpp only (the wsq package has it compiled in), "
            f"not {bitrate} bpp"
        )
    image = require_print(image)
    buffer = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(image), mode="L").save(buffer, "WSQ")
    except Exception as exc:  # NBIS reports every failure as a bare Exception("WSQ Error: -N")
        height, width = image.shape
        raise ValueError(f"could not encode a {width} x {height} print as WSQ: {exc}") from exc
    data = buffer.getvalue()
    if not data.startswith(SOI):
        raise ValueError("the WSQ encoder returned no WSQ image")
    return data


def decode_wsq(data: bytes) -> np.ndarray:
    """The 2-D uint8 grayscale image in the WSQ file ``data``.

    Raises ValueError when ``data`` is not a WSQ image or is damaged.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"WSQ data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(SOI):
        raise ValueError("not a WSQ image: no start-of-image marker (FF A0)")
    try:
        with Image.open(io.BytesIO(data), formats=["WSQ"]) as decoded:
            decoded.load()
            image = np.array(decoded)
    except Exception as exc:  # Pillow's UnidentifiedImageError/OSError, NBIS's bare Exception
        raise ValueError(f"could not decode the WSQ image: {exc}") from exc
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"the WSQ image decoded to {image.shape} {image.dtype}, not 8-bit gray")
    return image
