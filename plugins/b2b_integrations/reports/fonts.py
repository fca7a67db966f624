"""The PDF's fonts: DejaVu Sans (regular and bold), vendored in ``fonts/`` with its licence.

ReportLab's own Type 1 fonts cover Latin-1 only (no Ł, ğ, ő); a TrueType font registered with ReportLab is
embedded, as a subset of the glyphs used, in every PDF that uses it, so readers need nothing installed.
Vendored rather than taken from a system package so a fresh machine renders the same bytes.
"""

from __future__ import annotations

from pathlib import Path

FONT_DIR = Path(__file__).resolve().parent / "fonts"
REGULAR = "B2BDejaVuSans"
BOLD = "B2BDejaVuSans-Bold"
_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf"}


def register_fonts() -> tuple[str, str]:
    """Register both fonts with ReportLab (once per process) and return their names (regular, bold)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, file in _FILES.items():
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / file)))
    return REGULAR, BOLD
