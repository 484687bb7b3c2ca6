"""Text as a terminal QR code (block characters), for the peer and the operator command."""

from __future__ import annotations

import io

import qrcode


def qr_text(text: str) -> str:
    """``text`` as a QR code drawn with block characters (scan it with a phone)."""
    qr = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(text)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()
