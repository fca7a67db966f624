"""Webhook signature checks, against signers we did not write: the ``standardwebhooks`` library and the
demo CRM's GitHub/Stripe signers (include/demo/crm_app.py), plus tampering, staleness and wrong secrets."""

from __future__ import annotations

import base64
import importlib.util
import json
from datetime import UTC, datetime
from types import ModuleType

import pytest
from standardwebhooks.webhooks import Webhook

from b2b_integrations.webhooks.signatures import SignatureRejected, verify
from helpers import REPO

NOW = 1_780_000_000
BODY = json.dumps(
    {"id": "evt_1", "type": "invoice.paid", "data": {"invoice_id": "INV-9", "amount": 12.5}}
).encode()
WHSEC = "whsec_" + base64.b64encode(b"a-32-byte-signing-key-for-tests!").decode()


def _crm() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crm_app_for_signatures", REPO / "include/demo/crm_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = module  # dataclasses in the module look themselves up here
    spec.loader.exec_module(module)
    return module


CRM = _crm()


def _standard_headers(
    secret: str = WHSEC, msg_id: str = "msg_1", at: int = NOW, body: bytes = BODY
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_standard_webhooks_library_signature_is_accepted() -> None:
    verified = verify("standard_webhooks", WHSEC, _standard_headers(), BODY, now=NOW + 10)
    assert verified.message_id == "msg_1" and verified.timestamp == NOW


def test_standard_webhooks_header_names_are_case_insensitive_and_rotation_keeps_working() -> None:
    headers = {k.upper(): v for k, v in _standard_headers().items()}
    headers["WEBHOOK-SIGNATURE"] = "v1,bm90LXRoaXMtb25l " + headers["WEBHOOK-SIGNATURE"]  # old key first
    assert verify("standard_webhooks", WHSEC, headers, BODY, now=NOW).message_id == "msg_1"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("tampered_body", 401),
        ("wrong_secret", 401),
        ("stale", 401),
        ("future", 401),
        ("missing_header", 401),
        ("bad_timestamp", 400),
        ("huge_timestamp", 400),
        ("wrong_version", 401),
    ],
)
def test_standard_webhooks_rejections(change: str, status: int) -> None:
    headers, body, now = _standard_headers(), BODY, NOW
    if change == "tampered_body":
        body = BODY.replace(b"12.5", b"99.5")
    elif change == "wrong_secret":
        headers = _standard_headers(secret="whsec_" + base64.b64encode(b"another-key").decode())
    elif change == "stale":
        now = NOW + 301
    elif change == "future":
        now = NOW - 301
    elif change == "missing_header":
        del headers["webhook-id"]
    elif change == "bad_timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif change == "huge_timestamp":  # over Python's int-str limit: was a ValueError, a 500
        headers["webhook-timestamp"] = "9" * 5000
    elif change == "wrong_version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(SignatureRejected) as caught:
        verify("standard_webhooks", WHSEC, headers, body, now=now)
    assert caught.value.status == status


def test_standard_webhooks_tolerance_is_configurable() -> None:
    assert verify("standard_webhooks", WHSEC, _standard_headers(), BODY, now=NOW + 3000, tolerance=3600)


def test_github_signature_from_the_demo_sender() -> None:
    headers = {"X-Hub-Signature-256": CRM.sign_github("gh-secret", BODY), "X-GitHub-Delivery": "d-1"}
    assert verify("github", "gh-secret", headers, BODY, now=NOW).message_id == "d-1"
    with pytest.raises(SignatureRejected, match="does not match"):
        verify("github", "other-secret", headers, BODY, now=NOW)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify("github", "gh-secret", headers, BODY + b" ", now=NOW)
    with pytest.raises(SignatureRejected, match="malformed"):
        verify("github", "gh-secret", {"X-Hub-Signature-256": "md5=abc"}, BODY, now=NOW)


def test_github_without_a_delivery_id_deduplicates_by_content() -> None:
    headers = {"X-Hub-Signature-256": CRM.sign_github("gh-secret", BODY)}
    first = verify("github", "gh-secret", headers, BODY, now=NOW).message_id
    assert (
        first.startswith("sha256:")
        and first == verify("github", "gh-secret", headers, BODY, now=NOW + 99).message_id
    )


def test_a_stripe_timestamp_too_long_for_a_unix_time_is_rejected_not_an_error() -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify("stripe", "sk", {"stripe-signature": "t=" + "1" * 5000 + ",v1=00"}, BODY, now=NOW)
    assert caught.value.status == 400


def test_stripe_signature_from_the_demo_sender() -> None:
    headers = {"Stripe-Signature": CRM.sign_stripe("sk-secret", NOW, BODY), "Idempotency-Key": "evt-7"}
    verified = verify("stripe", "sk-secret", headers, BODY, now=NOW + 60)
    assert verified.message_id == "evt-7" and verified.timestamp == NOW
    with pytest.raises(SignatureRejected, match="more than 300 s"):
        verify("stripe", "sk-secret", headers, BODY, now=NOW + 301)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify("stripe", "sk-secret", headers, BODY.replace(b"INV-9", b"INV-8"), now=NOW)
    rotated = {
        "Stripe-Signature": f"t={NOW},v1=00ff," + CRM.sign_stripe("sk-secret", NOW, BODY).split(",")[1]
    }
    assert verify("stripe", "sk-secret", rotated, BODY, now=NOW).message_id.startswith("sha256:")


def test_shared_secret_header() -> None:
    assert verify(
        "shared_secret", "s3cret", {"X-Webhook-Secret": "s3cret", "X-Webhook-Id": "w-1"}, BODY, now=NOW
    )
    with pytest.raises(SignatureRejected):
        verify("shared_secret", "s3cret", {"X-Webhook-Secret": "s3cre"}, BODY, now=NOW)
    with pytest.raises(SignatureRejected):
        verify("shared_secret", "s3cret", {}, BODY, now=NOW)


def test_a_flow_without_a_configured_secret_rejects_everything_but_scheme_none() -> None:
    with pytest.raises(SignatureRejected, match="no signing secret"):
        verify("standard_webhooks", None, _standard_headers(), BODY, now=NOW)
    assert verify("none", None, {"webhook-id": "x"}, BODY, now=NOW).message_id == "x"


def test_sign_standard_is_accepted_by_the_standardwebhooks_library_and_by_verify() -> None:
    import time

    from b2b_integrations.webhooks.signatures import sign_standard

    secret = "whsec_" + base64.b64encode(b"outbound-signing-key-0123456789").decode()
    body = '{"type": "invoice.paid", "id": "evt_1", "data": {"amount": "12.50 \u20ac"}}'.encode()
    now = int(time.time())
    headers = sign_standard(secret, "evt_1", now, body)
    assert Webhook(secret).verify(body.decode(), headers) == json.loads(body)
    assert verify("standard_webhooks", secret, headers, body, now=now + 10).message_id == "evt_1"
    tampered = body.replace(b"12.50", b"99.50")
    with pytest.raises(Exception, match="[Ss]ignature"):
        Webhook(secret).verify(tampered.decode(), headers)
