"""A wg-quick file as a terminal QR code (the file itself: ``elysium.wgquick``)."""

from __future__ import annotations

from elysium.qr import qr_text

__all__ = ["qr_text"]
