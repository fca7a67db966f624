"""SMS rules (delivery/sms_text.py) and the sms target's options: E.164, encodings, segments, fitting."""

from __future__ import annotations

import pytest

from b2b_integrations.delivery.config import parse_targets
from b2b_integrations.delivery.sms_text import e164, fit, is_gsm7, masked, segments


def test_e164_numbers_are_normalised_or_refused_with_what_e164_is() -> None:
    assert e164("+45 12 34 56 78") == "+4512345678"
    assert e164("+1 (415) 555-0100") == "+14155550100"
    for bad in ("4512345678", "+0123456", "+45 12 34 56 78 90 12 34 5", "+45-ab", "", "++4512"):
        with pytest.raises(ValueError, match="not an E.164 phone number.*e.g. \\+4512345678"):
            e164(bad)
    assert masked("+4512345678") == "+45******78"


def test_segments_follow_gsm7_and_ucs2_limits() -> None:
    assert (segments("a" * 160), segments("a" * 161), segments("a" * 306), segments("a" * 307)) == (
        1,
        2,
        2,
        3,
    )
    # Extension characters count twice; one character outside GSM-7 makes the whole text UCS-2.
    assert is_gsm7("Größe € {1}") and segments("€" * 80) == 1 and segments("€" * 81) == 2
    assert not is_gsm7("ready…") and segments("ø" * 160 + "…") == 3
    assert segments("😀" * 35) == 1 and segments("😀" * 36) == 2  # two UCS-2 units each


def test_fit_cuts_to_the_segment_budget_with_a_gsm7_marker() -> None:
    assert fit("short", 1) == ("short", False)
    text, cut = fit("word " * 100, 2)
    assert cut and text.endswith("...") and segments(text) == 2 and len(text) <= 306
    text, cut = fit("€" * 200, 1)
    assert cut and segments(text) == 1 and text.endswith("...")
    text, cut = fit("ß…" * 100, 1)  # UCS-2: 70 units
    assert cut and segments(text) == 1 and len(text) <= 70


def test_sms_target_options_are_checked_at_their_key() -> None:
    (target,) = parse_targets(
        [{"type": "sms", "connection": "sms", "to": "+45 12 34 56 78", "sender": "+4598765432"}]
    )
    assert target.to == "+4512345678" and target.target_name == "sms"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"targets\[0\]\.to: Value error, '12345' is not an E.164"):
        parse_targets([{"type": "sms", "connection": "sms", "to": "12345", "sender": "+4598765432"}])
    (later,) = parse_targets(
        [{"type": "sms", "connection": "sms", "to": "${config.phone}", "sender": "+4598765432"}]
    )
    assert later.to == "${config.phone}"  # type: ignore[attr-defined]  # checked once resolved
