"""SMS rules, pure: E.164 numbers, the encoding a text needs, how many segments it costs, fitting it.

An SMS carries 160 GSM-7 characters (or 70 UCS-2 ones when any character is outside GSM-7, e.g. an emoji
or "…"); a longer text is split into segments of 153 (67) each, and every segment is billed. Characters of
GSM-7's extension table (``{ } [ ] ~ | \\ ^ €``) take two septets.
"""

from __future__ import annotations

import math
import re

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SEPARATORS = re.compile(r"[\s().\-/]")
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def e164(number: str) -> str:
    """The number in E.164 (``+4512345678``); spaces, dots, dashes, slashes and brackets are dropped first.
    ValueError says what E.164 is."""
    cleaned = _SEPARATORS.sub("", number)
    if not E164.match(cleaned):
        raise ValueError(
            f"{number!r} is not an E.164 phone number: '+', the country code and the number, digits only, "
            "at most 15 (e.g. +4512345678)"
        )
    return cleaned


def masked(number: str) -> str:
    """For logs: the country code's first digits and the last two, e.g. ``+45******78``."""
    return number[:3] + "*" * max(0, len(number) - 5) + number[-2:] if len(number) > 5 else number


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _units(text: str, gsm: bool) -> int:
    if gsm:
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2  # characters outside the BMP take two UCS-2 units


def segments(text: str) -> int:
    """How many SMS segments the text is sent (and billed) as."""
    gsm = is_gsm7(text)
    units = _units(text, gsm)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    return 1 if units <= single else math.ceil(units / part)


def fit(text: str, max_segments: int) -> tuple[str, bool]:
    """The text cut to at most ``max_segments`` segments, ending in "..." when cut; (text, was it cut)."""
    if segments(text) <= max_segments:
        return text, False
    gsm = is_gsm7(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    budget = single if max_segments == 1 else part * max_segments
    marker = "..."  # GSM-7: an ellipsis character would switch the whole text to UCS-2
    kept, used = [], _units(marker, gsm)
    for char in text:
        cost = _units(char, gsm)
        if used + cost > budget:
            break
        kept.append(char)
        used += cost
    return "".join(kept).rstrip() + marker, True
