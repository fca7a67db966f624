"""The pure inbound/outbound policies: the JSON every endpoint accepts, the addresses callbacks may go to."""

from __future__ import annotations

import ipaddress
import json
import logging

import pytest

from b2b_integrations.net.addresses import (
    AddressRefused,
    check_host,
    check_resolved,
    literal_address,
    parse_networks,
    refusal,
)
from b2b_integrations.net.json_body import INT64_MAX, INT64_MIN, MAX_DEPTH, JsonRefused, parse_json
from b2b_integrations.sync.callback import pinned_target

# ------------------------------------------------------------------------------------------- JSON policy


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": NaN}', "non_finite_number"),
        (json.dumps({"a": float("inf")}).encode(), "non_finite_number"),  # what Python's json writes
        (json.dumps([float("-inf")]).encode(), "non_finite_number"),
        (b"[1e999]", "non_finite_number"),
        (b"1" * 5000, "integer_out_of_range"),  # over Python's int-str limit: was a ValueError
        (b'{"n": -' + b"9" * 20 + b"}", "integer_out_of_range"),
        (str(INT64_MAX + 1).encode(), "integer_out_of_range"),
        (str(INT64_MIN - 1).encode(), "integer_out_of_range"),
        (b"[" * 50_000 + b"]" * 50_000, "too_deep"),  # was a RecursionError
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "too_deep"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "too_deep"),
        (b"\xff\xfe{}", "not_utf8"),
        ('{"a": "x"}'.encode("utf-16"), "not_utf8"),
        (b'{"a": 1', "not_json"),
        (b"", "not_json"),
        (b'{"a": "\\u0000"}', "unstorable_string"),
        (b'{"\\ud800": 1}', "unstorable_string"),
    ],
)
def test_hostile_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        parse_json(body)
    assert refused.value.reason == reason
    assert refused.value.answer_body() == {
        "error": "bad_json",
        "reason": reason,
        "detail": refused.value.detail,
    }
    assert len(refused.value.detail) < 300  # never the whole hostile value back


def test_ordinary_bodies_parse_as_json_does() -> None:
    body = {
        "id": "INV-1",
        "n": [INT64_MIN, INT64_MAX, 0, -1, 1.5, 1e308],
        "text": 'brackets [[{ in a string \\" and escapes \ud83d\ude00',
        "deep": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)),
        "nul_looking": "\\u0000 as text",
    }
    raw = json.dumps(body).encode()
    assert parse_json(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 2), "too_deep"),  # deep and unbalanced
        (b"[1, 2" + b"[" * 10, "not_json"),  # unbalanced, shallow
        (b"]" + b"[" * 100_000, "not_json"),  # json.loads stops at the first character
        (b"[}" * 1000, "not_json"),
        (b'["unterminated ' + b"[" * 100, "too_deep"),  # counted: refuse more, never less
    ],
)
def test_malformed_bracket_sequences_never_reach_the_parser_too_deep(body: bytes, reason: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        parse_json(body)
    assert refused.value.reason == reason


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    value = {"s": "[" * 10_000, "t": '\\"{' * 1000}
    assert parse_json(json.dumps(value).encode()) == value


# --------------------------------------------------------------------------------------- address policy


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fc00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_addresses_into_our_network_are_refused(host: str, why: str) -> None:
    with pytest.raises(AddressRefused, match=why):
        check_host(host)


@pytest.mark.parametrize(
    "host", ["0x7f000001", "2130706433", "0177.0.0.1", "127.1", "0x7f.1", "127.0.0.01", "1.2.3.4.5", "0x"]
)
def test_ipv4_in_any_form_but_the_dotted_quad_is_refused(host: str) -> None:
    with pytest.raises(AddressRefused, match="non-canonical"):
        literal_address(host)


@pytest.mark.parametrize(
    "host",
    ["１２７.0.0.1", "exa mple.com", "a..b", "%31%32%37.0.0.1", "-x.com", "127.0.0.1\n", "x.example\n"],
)
def test_hosts_that_are_not_plain_names_are_refused(host: str) -> None:
    with pytest.raises(AddressRefused):
        literal_address(host)


def test_public_addresses_and_names_pass() -> None:
    assert check_host("93.184.215.14") == ipaddress.IPv4Address("93.184.215.14")
    assert check_host("2606:4700::1111") == ipaddress.IPv6Address("2606:4700::1111")
    assert check_host("hooks.example.com") is None  # a name: checked after DNS, when sending
    assert check_host("1.2.3.4.") == ipaddress.IPv4Address("1.2.3.4")


def test_the_allow_list_opens_only_its_networks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        allowed = parse_networks(" 127.0.0.1/32, 10.0.0.0/8 ,not-a-net,")
    assert allowed == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    assert "not-a-net" in caplog.text and "B2B_CALLBACK_ALLOWED_NETWORKS" in caplog.text
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None  # the same address
    assert refusal(ipaddress.ip_address("10.9.9.9"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "loopback"
    assert refusal(ipaddress.ip_address("::1"), allowed) == "loopback"


def test_a_name_is_refused_when_any_of_its_addresses_is() -> None:
    assert check_resolved("ok.example", ["93.184.215.14"]) == ipaddress.IPv4Address("93.184.215.14")
    with pytest.raises(AddressRefused, match="sneaky.example resolves to a loopback address"):
        check_resolved("sneaky.example", ["93.184.215.14", "127.0.0.1"])
    with pytest.raises(AddressRefused, match="no address"):
        check_resolved("empty.example", [])


# ------------------------------------------------------------------------- the callback's pinned target


def test_the_callback_connects_to_the_address_it_checked_with_the_name_as_host_and_sni() -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # a rebinding name: public first, loopback next
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return next(answers)

    target, host, extensions = pinned_target("https://hooks.example:8443/cb?token=t", (), resolve)
    assert (target, host, extensions) == (
        "https://93.184.215.14:8443/cb?token=t",
        "hooks.example:8443",
        {"sni_hostname": "hooks.example"},
    )
    assert calls == [("hooks.example", 8443)]  # resolved once: the connection cannot be rebound
    with pytest.raises(AddressRefused, match="hooks.example resolves to a loopback"):
        pinned_target("https://hooks.example:8443/cb?token=t", (), resolve)


def test_the_pinned_target_of_literal_and_ipv6_hosts() -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address needs no DNS")

    assert pinned_target("http://93.184.215.14/cb", (), no_dns) == (
        "http://93.184.215.14/cb",
        "93.184.215.14",
        {},
    )
    assert pinned_target("http://v6.example/cb", (), lambda h, p: ["2606:4700::1111"]) == (
        "http://[2606:4700::1111]/cb",
        "v6.example",
        {},
    )
    with pytest.raises(AddressRefused, match="loopback"):
        pinned_target("http://127.0.0.1:9/cb", (), no_dns)
    allowed = parse_networks("127.0.0.1/32")
    assert (
        pinned_target("http://localhost:9/cb", allowed, lambda h, p: ["127.0.0.1"])[0]
        == "http://127.0.0.1:9/cb"
    )


def test_a_refused_callback_address_fails_at_once_without_retries() -> None:
    from b2b_integrations.sources.retries import RetryPolicy
    from b2b_integrations.sync.callback import CallbackRefused, deliver

    tries: list[str] = []

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        tries.append(url)
        pinned_target(url, (), lambda h, p: ["127.0.0.1"])
        return 200

    with pytest.raises(
        CallbackRefused, match="callback to localhost was refused: localhost resolves to a loopback"
    ):
        deliver(
            "http://localhost:9/cb?token=secret-token",
            b"{}",
            "whsec_c2VjcmV0",
            "msg_1",
            RetryPolicy(attempts=5, base_seconds=0.0, max_seconds=0.0),
            post,
            sleep=lambda s: None,
        )
    assert len(tries) == 1


def test_check_value_depth_walks_without_recursion() -> None:
    from b2b_integrations.net.json_body import MAX_DEPTH, JsonRefused, check_value_depth

    value: object = "leaf"
    for _ in range(MAX_DEPTH):
        value = [value]
    check_value_depth(value)  # exactly the limit
    with pytest.raises(JsonRefused, match="deeper"):
        check_value_depth([value])
    very_deep: object = 1
    for _ in range(100_000):  # far past Python's recursion limit
        very_deep = [very_deep]
    with pytest.raises(JsonRefused):
        check_value_depth(very_deep)
    check_value_depth({"a": [1, {"b": None}], "c": "x" * 10})
