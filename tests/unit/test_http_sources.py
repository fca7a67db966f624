"""The pure building blocks of the HTTP API source: pagination, retry decisions and incremental cursors.

Every strategy here is pure, so the tests drive them with hand-built ``PageResponse`` objects (or a tiny
in-memory "API" that answers a ``PageRequest``) and assert the exact requests, waits and cursors.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from b2b_integrations.config.steps import PAGINATION_MODELS
from b2b_integrations.sources.incremental import IncrementalSync, incremental_from_config
from b2b_integrations.sources.pagination import (
    PAGINATORS,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    PageResponse,
    Paginator,
    get_path,
    paginator_from_config,
    parse_link_header,
    select_records,
)
from b2b_integrations.sources.retries import TRANSIENT_STATUSES, RetryPolicy, parse_retry_after

BASE = "https://api.example.com/v1/items"

Serve = Callable[[PageRequest], PageResponse]


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def response(
    request: PageRequest,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    record_count: int = 0,
    url: str | None = None,
) -> PageResponse:
    """A page as the HTTP client would hand it to a strategy."""
    return PageResponse(
        request=request,
        url=url if url is not None else request.url,
        body=body,
        headers=headers or {},
        record_count=record_count,
    )


def walk(
    paginator: Paginator, serve: Serve, params: dict[str, Any] | None = None, max_pages: int = 50
) -> list[PageRequest]:
    """Every request the strategy makes against ``serve``, first to last."""
    requests: list[PageRequest] = []
    request: PageRequest | None = paginator.first(BASE, params or {})
    while request is not None:
        requests.append(request)
        assert len(requests) <= max_pages, "the paginator never stopped"
        request = paginator.next(serve(request))
    return requests


def page_number_api(
    total: int, server_page_size: int | None = None, body_extra: dict[str, Any] | None = None
) -> Serve:
    """``?page=N&per_page=S`` over ``total`` records; the server's own size when there is no per_page."""

    def serve(request: PageRequest) -> PageResponse:
        size = int(request.params.get("per_page", server_page_size or 0))
        number = int(request.params["page"])
        start = (number - 1) * size
        records = list(range(total))[start : start + size]
        return response(request, body={"data": records, **(body_extra or {})}, record_count=len(records))

    return serve


def offset_api(total: int, cap: int | None = None, report_total: bool = False) -> Serve:
    """``?offset=O&limit=L`` over ``total`` records; ``cap`` is a server-side maximum page size."""

    def serve(request: PageRequest) -> PageResponse:
        offset, limit = int(request.params["offset"]), int(request.params["limit"])
        size = min(limit, cap) if cap else limit
        records = list(range(total))[offset : offset + size]
        body: dict[str, Any] = {"data": records}
        if report_total:
            body["meta"] = {"total": total}
        return response(request, body=body, record_count=len(records))

    return serve


def cursor_api(chain: list[tuple[int, Any]]) -> Serve:
    """Page i has ``chain[i] = (record_count, next_cursor)``; cursor ``c<i>`` asks for page i."""

    def serve(request: PageRequest) -> PageResponse:
        cursor = request.params.get("cursor")
        index = 0 if cursor is None else int(str(cursor)[1:])
        count, token = chain[index]
        return response(request, body={"items": [{}] * count, "next_cursor": token}, record_count=count)

    return serve


class _CeilingRandom(random.Random):
    """A Random whose ``uniform`` returns the top of the range, to read the backoff ceiling exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _FloorRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


# --------------------------------------------------------------------------------------------------------
# get_path / select_records
# --------------------------------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "data": {"items": [{"id": 1}, {"id": 2, "tags": ["x", "y"]}], "count": 2},
    "meta": {"next": None, "empty": ""},
    "top": [10, 20, 30],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.count", 2),
        ("data.items", [{"id": 1}, {"id": 2, "tags": ["x", "y"]}]),
        ("data.items.0", {"id": 1}),
        ("data.items.1.id", 2),
        ("data.items.1.tags.1", "y"),
        ("top.2", 30),
        ("meta.empty", ""),
        ("meta.next", None),
        ("missing", None),
        ("data.missing.deeper", None),
        ("data.items.5", None),  # index past the end
        ("data.items.-1", None),  # negative indexes are not supported
        ("data.items.first", None),  # non-numeric part on a list
        ("data.count.x", None),  # descending into a scalar
        ("meta.next.x", None),  # descending into null
    ],
)
def test_get_path(path: str, expected: Any) -> None:
    assert get_path(DOC, path) == expected


@pytest.mark.parametrize("path", ["", None])
def test_get_path_empty_path_is_the_document(path: str | None) -> None:
    assert get_path(DOC, path) is DOC
    assert get_path([1, 2], path) == [1, 2]


def test_select_records_returns_the_list_at_the_path() -> None:
    body = {"data": {"items": [{"id": 1}, {"id": 2}]}}
    assert select_records(body, "data.items") is body["data"]["items"]


@pytest.mark.parametrize("path", ["", None])
def test_select_records_top_level_list(path: str | None) -> None:
    body = [{"id": 1}]
    assert select_records(body, path) is body


def test_select_records_empty_list_is_fine() -> None:
    assert select_records({"data": []}, "data") == []


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"data": {"id": 1}}, "data", "expected a list of records at records_path 'data', found dict"),
        ({"data": "x"}, "data", "expected a list of records at records_path 'data', found str"),
        ({"data": 3}, "data", "expected a list of records at records_path 'data', found int"),
        (
            {"data": []},
            "data.items",
            "expected a list of records at records_path 'data.items', found nothing",
        ),
        ({"other": []}, "data", "expected a list of records at records_path 'data', found nothing"),
        (
            {"data": []},
            None,
            "expected a list of records at the top level (set records_path?), found dict",
        ),
        (
            {"data": []},
            "",
            "expected a list of records at the top level (set records_path?), found dict",
        ),
        (None, None, "expected a list of records at the top level (set records_path?), found nothing"),
    ],
)
def test_select_records_not_a_list_names_the_path(body: Any, path: str | None, message: str) -> None:
    with pytest.raises(ValueError) as info:
        select_records(body, path)
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------------------
# Base paginator ("none")
# --------------------------------------------------------------------------------------------------------


def test_none_paginator_makes_one_request_with_a_copy_of_the_params() -> None:
    params = {"status": "open"}
    first = Paginator().first(BASE, params)
    assert first == PageRequest(BASE, {"status": "open"})
    params["status"] = "closed"
    assert first.params == {"status": "open"}
    assert Paginator().next(response(first, body={"next": "x"}, record_count=100)) is None


def test_none_paginator_walk() -> None:
    requests = walk(Paginator(), page_number_api(1000, server_page_size=10), {"page": 1})
    assert requests == [PageRequest(BASE, {"page": 1})]


# --------------------------------------------------------------------------------------------------------
# page_number
# --------------------------------------------------------------------------------------------------------


def test_page_number_first_request_merges_caller_params() -> None:
    params = {"status": "open"}
    first = PageNumberPaginator().first(BASE, params)
    assert first == PageRequest(BASE, {"status": "open", "per_page": 100, "page": 1})
    assert params == {"status": "open"}  # the caller's dict is not touched


def test_page_number_paginator_settings_win_over_caller_params() -> None:
    first = PageNumberPaginator(page_size=25).first(BASE, {"page": 7, "per_page": 500, "q": "a"})
    assert first.params == {"page": 1, "per_page": 25, "q": "a"}


def test_page_number_custom_params_and_first_page() -> None:
    paginator = PageNumberPaginator(page_param="p", size_param="size", page_size=3, first_page=0)
    first = paginator.first(BASE, {})
    assert first == PageRequest(BASE, {"size": 3, "p": 0})
    second = paginator.next(response(first, record_count=3))
    assert second == PageRequest(BASE, {"size": 3, "p": 1})


def test_page_number_without_size_param_sends_no_size() -> None:
    assert PageNumberPaginator(size_param=None).first(BASE, {"q": 1}).params == {"q": 1, "page": 1}


def test_page_number_walk_stops_at_short_page() -> None:
    requests = walk(PageNumberPaginator(page_size=100), page_number_api(250), {"q": "x"})
    assert [r.params for r in requests] == [
        {"q": "x", "per_page": 100, "page": 1},
        {"q": "x", "per_page": 100, "page": 2},
        {"q": "x", "per_page": 100, "page": 3},
    ]
    assert all(r.url == BASE for r in requests)


def test_page_number_walk_stops_at_empty_page_after_full_pages() -> None:
    requests = walk(PageNumberPaginator(page_size=100), page_number_api(200))
    assert [r.params["page"] for r in requests] == [1, 2, 3]


def test_page_number_walk_single_empty_page() -> None:
    assert [r.params["page"] for r in walk(PageNumberPaginator(), page_number_api(0))] == [1]


def test_page_number_walk_without_size_param_stops_only_at_empty_page() -> None:
    # The server picks its own page size (30): a short page means nothing when we did not ask a size.
    paginator = PageNumberPaginator(size_param=None, page_size=100)
    requests = walk(paginator, page_number_api(70, server_page_size=30))
    assert [r.params for r in requests] == [{"page": 1}, {"page": 2}, {"page": 3}, {"page": 4}]


def test_page_number_walk_stops_at_total_pages_even_when_pages_are_full() -> None:
    paginator = PageNumberPaginator(page_size=10, total_pages_path="meta.total_pages")
    requests = walk(paginator, page_number_api(1000, body_extra={"meta": {"total_pages": 3}}))
    assert [r.params["page"] for r in requests] == [1, 2, 3]


def test_page_number_total_pages_keeps_going_past_short_pages() -> None:
    # With a total known, a short page (server capped the size) does not end the walk.
    paginator = PageNumberPaginator(page_size=100, total_pages_path="total_pages")
    first = paginator.first(BASE, {})
    second = paginator.next(response(first, body={"total_pages": "2"}, record_count=40))
    assert second == PageRequest(BASE, {"per_page": 100, "page": 2})
    assert paginator.next(response(second, body={"total_pages": "2"}, record_count=40)) is None


@pytest.mark.parametrize(("first_page", "expected"), [(1, [1, 2, 3]), (0, [0, 1, 2])])
def test_page_number_total_pages_respects_first_page(first_page: int, expected: list[int]) -> None:
    paginator = PageNumberPaginator(page_size=1, first_page=first_page, total_pages_path="pages")
    request: PageRequest | None = paginator.first(BASE, {})
    seen: list[int] = []
    while request is not None:
        seen.append(request.params["page"])
        assert len(seen) < 10
        request = paginator.next(response(request, body={"pages": 3}, record_count=1))
    assert seen == expected


def test_page_number_zero_total_pages_stops_at_once() -> None:
    paginator = PageNumberPaginator(total_pages_path="pages")
    first = paginator.first(BASE, {})
    assert paginator.next(response(first, body={"pages": 0}, record_count=100)) is None


@pytest.mark.parametrize("total", [True, "many", None, [3]])
def test_page_number_unreadable_total_pages_falls_back_to_page_sizes(total: Any) -> None:
    paginator = PageNumberPaginator(page_size=10, total_pages_path="pages")
    first = paginator.first(BASE, {})
    assert paginator.next(response(first, body={"pages": total}, record_count=10)) == PageRequest(
        BASE, {"per_page": 10, "page": 2}
    )
    assert paginator.next(response(first, body={"pages": total}, record_count=9)) is None


# --------------------------------------------------------------------------------------------------------
# offset
# --------------------------------------------------------------------------------------------------------


def test_offset_first_request_merges_caller_params() -> None:
    params = {"q": "x", "offset": 50, "limit": 1}
    first = OffsetPaginator(limit=20).first(BASE, params)
    assert first == PageRequest(BASE, {"q": "x", "offset": 0, "limit": 20})
    assert params == {"q": "x", "offset": 50, "limit": 1}


def test_offset_custom_param_names() -> None:
    paginator = OffsetPaginator(offset_param="skip", limit_param="take", limit=5)
    first = paginator.first(BASE, {})
    assert first.params == {"skip": 0, "take": 5}
    assert paginator.next(response(first, record_count=5)) == PageRequest(BASE, {"skip": 5, "take": 5})


def test_offset_walk_stops_at_short_page() -> None:
    requests = walk(OffsetPaginator(limit=100), offset_api(250), {"q": "x"})
    assert [r.params for r in requests] == [
        {"q": "x", "offset": 0, "limit": 100},
        {"q": "x", "offset": 100, "limit": 100},
        {"q": "x", "offset": 200, "limit": 100},
    ]


def test_offset_walk_stops_at_empty_page() -> None:
    requests = walk(OffsetPaginator(limit=100), offset_api(200))
    assert [r.params["offset"] for r in requests] == [0, 100, 200]


def test_offset_walk_single_empty_page() -> None:
    assert [r.params["offset"] for r in walk(OffsetPaginator(), offset_api(0))] == [0]


def test_offset_walk_without_total_stops_when_server_caps_the_page() -> None:
    requests = walk(OffsetPaginator(limit=100), offset_api(500, cap=50))
    assert [r.params["offset"] for r in requests] == [0]


def test_offset_walk_with_total_advances_by_records_received() -> None:
    # The server caps pages at 50; with the total known the walk goes on, by the records actually read.
    paginator = OffsetPaginator(limit=100, total_path="meta.total")
    requests = walk(paginator, offset_api(120, cap=50, report_total=True))
    assert [r.params["offset"] for r in requests] == [0, 50, 100]


def test_offset_walk_with_total_stops_exactly_at_total() -> None:
    paginator = OffsetPaginator(limit=10, total_path="meta.total")
    requests = walk(paginator, offset_api(30, report_total=True))
    assert [r.params["offset"] for r in requests] == [0, 10, 20]


def test_offset_with_total_stops_on_empty_page_before_total() -> None:
    paginator = OffsetPaginator(limit=10, total_path="total")
    first = paginator.first(BASE, {})
    assert paginator.next(response(first, body={"total": 1000}, record_count=0)) is None


def test_offset_total_as_string() -> None:
    paginator = OffsetPaginator(limit=10, total_path="total")
    first = paginator.first(BASE, {})
    assert paginator.next(response(first, body={"total": "10"}, record_count=10)) is None
    assert paginator.next(response(first, body={"total": "11"}, record_count=10)) == PageRequest(
        BASE, {"offset": 10, "limit": 10}
    )


# --------------------------------------------------------------------------------------------------------
# cursor
# --------------------------------------------------------------------------------------------------------


def test_cursor_first_request_merges_caller_params_without_cursor() -> None:
    first = CursorPaginator(limit=50).first(BASE, {"q": "x", "limit": 7})
    assert first == PageRequest(BASE, {"q": "x", "limit": 50})


def test_cursor_first_request_without_limit_param() -> None:
    assert CursorPaginator(limit_param=None).first(BASE, {"q": "x"}).params == {"q": "x"}


def test_cursor_walk_follows_tokens_until_empty() -> None:
    serve = cursor_api([(100, "c1"), (100, "c2"), (40, "")])
    requests = walk(CursorPaginator(limit=100), serve, {"q": "x"})
    assert [r.params for r in requests] == [
        {"q": "x", "limit": 100},
        {"q": "x", "limit": 100, "cursor": "c1"},
        {"q": "x", "limit": 100, "cursor": "c2"},
    ]
    assert all(r.url == BASE for r in requests)


@pytest.mark.parametrize("last_token", [None, ""])
def test_cursor_stops_on_empty_or_null_token(last_token: Any) -> None:
    serve = cursor_api([(100, "c1"), (100, last_token)])
    assert len(walk(CursorPaginator(), serve)) == 2


def test_cursor_stops_when_token_missing() -> None:
    paginator = CursorPaginator()
    first = paginator.first(BASE, {})
    assert paginator.next(response(first, body={"items": [1]}, record_count=1)) is None


def test_cursor_stops_on_empty_page_even_with_a_token() -> None:
    serve = cursor_api([(100, "c1"), (0, "c2"), (100, "")])
    assert len(walk(CursorPaginator(), serve)) == 2


def test_cursor_does_not_stop_on_short_page_while_a_token_comes() -> None:
    serve = cursor_api([(3, "c1"), (3, "c2"), (3, None)])
    assert len(walk(CursorPaginator(limit=100), serve)) == 3


def test_cursor_nested_path_and_custom_param() -> None:
    paginator = CursorPaginator(cursor_param="after", next_cursor_path="paging.cursors.after")
    first = paginator.first(BASE, {})
    body = {"paging": {"cursors": {"after": "QVFI"}}}
    assert paginator.next(response(first, body=body, record_count=1)) == PageRequest(
        BASE, {"limit": 100, "after": "QVFI"}
    )


def test_cursor_numeric_zero_token_is_followed() -> None:
    paginator = CursorPaginator()
    first = paginator.first(BASE, {})
    nxt = paginator.next(response(first, body={"next_cursor": 0}, record_count=1))
    assert nxt == PageRequest(BASE, {"limit": 100, "cursor": 0})


def test_cursor_same_token_twice_raises() -> None:
    serve = cursor_api([(100, "c1"), (100, "c1")])
    with pytest.raises(ValueError) as info:
        walk(CursorPaginator(), serve)
    assert str(info.value) == "the API returned the same cursor twice ('next_cursor'); stopping"


# --------------------------------------------------------------------------------------------------------
# next_url
# --------------------------------------------------------------------------------------------------------


def test_next_url_first_request() -> None:
    assert NextUrlPaginator().first(BASE, {"q": "x"}) == PageRequest(BASE, {"q": "x"})
    assert NextUrlPaginator(limit_param="page_size", limit=20).first(BASE, {"q": "x"}) == PageRequest(
        BASE, {"q": "x", "page_size": 20}
    )


def test_next_url_walk_follows_absolute_links_without_params() -> None:
    links = {
        BASE: f"{BASE}?page=2&q=x",
        f"{BASE}?page=2&q=x": f"{BASE}?page=3&q=x",
        f"{BASE}?page=3&q=x": None,
    }

    def serve(request: PageRequest) -> PageResponse:
        return response(request, body={"results": [1], "next": links[request.url]}, record_count=1)

    requests = walk(NextUrlPaginator(), serve, {"q": "x"})
    assert requests == [
        PageRequest(BASE, {"q": "x"}),
        PageRequest(f"{BASE}?page=2&q=x", {}),
        PageRequest(f"{BASE}?page=3&q=x", {}),
    ]


@pytest.mark.parametrize(
    ("page_url", "link", "expected"),
    [
        (
            "https://api.example.com/v1/items?page=1",
            "/v1/items?page=2",
            "https://api.example.com/v1/items?page=2",
        ),
        ("https://api.example.com/v1/items?page=1", "?page=2", "https://api.example.com/v1/items?page=2"),
        ("https://api.example.com/v1/items", "items?page=2", "https://api.example.com/v1/items?page=2"),
        ("https://api.example.com/v1/items/", "2", "https://api.example.com/v1/items/2"),
        ("https://api.example.com/v1/items", "../v2/items?p=2", "https://api.example.com/v2/items?p=2"),
        ("https://api.example.com/v1/items", "//other.example.com/x", "https://other.example.com/x"),
        ("https://api.example.com/v1/items", "https://cdn.example.com/p2", "https://cdn.example.com/p2"),
    ],
)
def test_next_url_relative_links_resolve_against_the_page_url(
    page_url: str, link: str, expected: str
) -> None:
    paginator = NextUrlPaginator()
    # The request URL may be relative to the connection's base; resolution uses the URL actually read.
    page = response(PageRequest("/v1/items", {"q": 1}), body={"next": link}, record_count=1, url=page_url)
    assert paginator.next(page) == PageRequest(expected, {})


@pytest.mark.parametrize("body", [{"next": None}, {"next": ""}, {}, {"meta": {}}, None])
def test_next_url_stops_without_a_link(body: Any) -> None:
    page = response(PageRequest(BASE), body=body, record_count=10)
    assert NextUrlPaginator().next(page) is None


def test_next_url_stops_on_empty_page() -> None:
    page = response(PageRequest(BASE), body={"next": f"{BASE}?page=2"}, record_count=0)
    assert NextUrlPaginator().next(page) is None


def test_next_url_nested_path() -> None:
    page = response(PageRequest(BASE), body={"links": {"next": "?page=2"}}, record_count=1)
    assert NextUrlPaginator(next_url_path="links.next").next(page) == PageRequest(f"{BASE}?page=2", {})


@pytest.mark.parametrize("link", [f"{BASE}?page=2", "?page=2", "items?page=2", "/v1/items?page=2"])
def test_next_url_pointing_at_the_same_page_raises(link: str) -> None:
    page_url = f"{BASE}?page=2"
    page = response(PageRequest(page_url), body={"next": link}, record_count=5, url=page_url)
    with pytest.raises(ValueError) as info:
        NextUrlPaginator().next(page)
    assert str(info.value) == f"the API's next link points at the page just read ({page_url}); stopping"


# --------------------------------------------------------------------------------------------------------
# link_header
# --------------------------------------------------------------------------------------------------------


def test_link_header_first_request() -> None:
    assert LinkHeaderPaginator().first(BASE, {"q": "x"}) == PageRequest(BASE, {"q": "x"})
    assert LinkHeaderPaginator(size_param="per_page", page_size=50).first(BASE, {"q": "x"}) == PageRequest(
        BASE, {"q": "x", "per_page": 50}
    )


def test_link_header_walk_follows_next_until_none() -> None:
    # Keyed by the URL actually requested (params encoded); page 2 answers with relative links.
    links = {
        f"{BASE}?per_page=2": f'<{BASE}?page=2&per_page=2>; rel="next", <{BASE}?page=3&per_page=2>; rel="last"',
        f"{BASE}?page=2&per_page=2": '<?page=3&per_page=2>; rel="next", <?page=1&per_page=2>; rel="prev"',
        f"{BASE}?page=3&per_page=2": f'<{BASE}?page=1&per_page=2>; rel="first", <?page=2&per_page=2>; rel="prev"',
    }

    def serve(request: PageRequest) -> PageResponse:
        url = f"{request.url}?{urlencode(request.params)}" if request.params else request.url
        return response(request, headers={"Link": links[url]}, record_count=2, url=url)

    requests = walk(LinkHeaderPaginator(size_param="per_page", page_size=2), serve)
    assert requests == [
        PageRequest(BASE, {"per_page": 2}),
        PageRequest(f"{BASE}?page=2&per_page=2", {}),
        PageRequest(f"{BASE}?page=3&per_page=2", {}),
    ]


@pytest.mark.parametrize("name", ["Link", "link", "LINK"])
def test_link_header_name_is_case_insensitive(name: str) -> None:
    page = response(PageRequest(BASE), headers={name: f'<{BASE}?page=2>; rel="next"'}, record_count=1)
    assert LinkHeaderPaginator().next(page) == PageRequest(f"{BASE}?page=2", {})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json"},
        {"Link": ""},
        {"Link": f'<{BASE}?page=1>; rel="prev", <{BASE}?page=9>; rel="last"'},
    ],
)
def test_link_header_stops_without_next(headers: dict[str, str]) -> None:
    assert LinkHeaderPaginator().next(response(PageRequest(BASE), headers=headers, record_count=5)) is None


def test_link_header_relative_next_resolves_against_page_url() -> None:
    page = response(
        PageRequest("/v1/items", {"per_page": 2}),
        headers={"Link": '</v1/items?page=2>; rel="next"'},
        record_count=2,
        url="https://api.example.com/v1/items?per_page=2",
    )
    assert LinkHeaderPaginator().next(page) == PageRequest("https://api.example.com/v1/items?page=2", {})


def test_link_header_custom_rel() -> None:
    headers = {"Link": f'<{BASE}?p=2>; rel="next", <{BASE}?after=abc>; rel="more"'}
    page = response(PageRequest(BASE), headers=headers, record_count=1)
    assert LinkHeaderPaginator(rel="more").next(page) == PageRequest(f"{BASE}?after=abc", {})


def test_link_header_next_pointing_at_same_page_raises() -> None:
    url = f"{BASE}?page=2"
    page = response(PageRequest(url), headers={"Link": '<?page=2>; rel="next"'}, record_count=1, url=url)
    with pytest.raises(
        ValueError, match=r"points at the page just read \(https://api\.example\.com/v1/items\?page=2\)"
    ):
        LinkHeaderPaginator().next(page)


# --------------------------------------------------------------------------------------------------------
# parse_link_header
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("not a link header", {}),
        ("<https://a.example/2>", {}),  # no rel at all
        ('<https://a.example/2>; rel="next"', {"next": "https://a.example/2"}),
        ("<https://a.example/2>; rel=next", {"next": "https://a.example/2"}),
        (
            '<https://a.example/2>; rel="next", <https://a.example/1>; rel="prev"',
            {"next": "https://a.example/2", "prev": "https://a.example/1"},
        ),
        (
            "<https://a.example/2>; rel=next, <https://a.example/9>; rel=last",
            {"next": "https://a.example/2", "last": "https://a.example/9"},
        ),
        (
            '<https://a.example/9>; rel="last next"',
            {"last": "https://a.example/9", "next": "https://a.example/9"},
        ),
        (
            '  < https://a.example/2 >  ;  rel = "next"  ,\t<https://a.example/1>;rel="prev"  ',
            {"next": "https://a.example/2", "prev": "https://a.example/1"},
        ),
        ('<https://a.example/2>; REL="Next"', {"next": "https://a.example/2"}),
        (
            '<https://a.example/2>; title="page two"; rel="next"; type="application/json"',
            {"next": "https://a.example/2"},
        ),
        (
            # GitHub-style: URLs with commas-free query strings and several params.
            '<https://api.github.com/r?page=2&per_page=1>; rel="next", '
            '<https://api.github.com/r?page=5&per_page=1>; rel="last"',
            {
                "next": "https://api.github.com/r?page=2&per_page=1",
                "last": "https://api.github.com/r?page=5&per_page=1",
            },
        ),
        ('</relative?page=2>; rel="next"', {"next": "/relative?page=2"}),
        (
            # The first link with a given rel wins.
            '<https://a.example/2>; rel="next", <https://a.example/3>; rel="next"',
            {"next": "https://a.example/2"},
        ),
        (
            # A comma inside the URL is part of the URL.
            '<https://a.example/x?ids=1,2>; rel="next"',
            {"next": "https://a.example/x?ids=1,2"},
        ),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


def test_parse_link_header_none() -> None:
    assert parse_link_header(None) == {}  # type: ignore[arg-type]


def test_parse_link_header_comma_inside_quoted_attribute() -> None:
    header = '<https://a.example/2>; title="Page 2, of 9"; rel="next"'
    assert parse_link_header(header) == {"next": "https://a.example/2"}


# --------------------------------------------------------------------------------------------------------
# paginator_from_config
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, {}, {"style": "none"}])
def test_from_config_none(config: dict[str, Any] | None) -> None:
    paginator = paginator_from_config(config)
    assert type(paginator) is Paginator
    assert paginator.style == "none"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"style": "page_number"}, PageNumberPaginator()),
        (
            {
                "style": "page_number",
                "page_param": "p",
                "size_param": None,
                "page_size": 25,
                "first_page": 0,
                "total_pages_path": "meta.pages",
            },
            PageNumberPaginator("p", None, 25, 0, "meta.pages"),
        ),
        ({"style": "offset"}, OffsetPaginator()),
        (
            {"style": "offset", "offset_param": "skip", "limit_param": "take", "limit": 7, "total_path": "n"},
            OffsetPaginator("skip", "take", 7, "n"),
        ),
        ({"style": "cursor"}, CursorPaginator()),
        (
            {
                "style": "cursor",
                "cursor_param": "after",
                "next_cursor_path": "p.a",
                "limit_param": None,
                "limit": 3,
            },
            CursorPaginator("after", "p.a", None, 3),
        ),
        ({"style": "next_url"}, NextUrlPaginator()),
        (
            {"style": "next_url", "next_url_path": "links.next", "limit_param": "n", "limit": 9},
            NextUrlPaginator("links.next", "n", 9),
        ),
        ({"style": "link_header"}, LinkHeaderPaginator()),
        (
            {"style": "link_header", "rel": "more", "size_param": "per_page", "page_size": 1},
            LinkHeaderPaginator("more", "per_page", 1),
        ),
    ],
)
def test_from_config_every_style(config: dict[str, Any], expected: Paginator) -> None:
    paginator = paginator_from_config(config)
    assert type(paginator) is type(expected)
    assert paginator == expected
    assert paginator.style == config["style"]


def test_from_config_does_not_mutate_the_config() -> None:
    config = {"style": "cursor", "limit": 5}
    paginator_from_config(config)
    assert config == {"style": "cursor", "limit": 5}


def test_paginator_registry_lists_every_style() -> None:
    assert sorted(PAGINATORS) == ["cursor", "link_header", "next_url", "none", "offset", "page_number"]


@pytest.mark.parametrize("style", ["pages", "", None, "PAGE_NUMBER"])
def test_from_config_unknown_style(style: Any) -> None:
    with pytest.raises(ValueError) as info:
        paginator_from_config({"style": style})
    assert str(info.value) == (
        "pagination style must be one of "
        f"['cursor', 'link_header', 'next_url', 'none', 'offset', 'page_number'], got {style!r}"
    )


def test_from_config_options_without_style() -> None:
    with pytest.raises(ValueError, match=r"pagination style must be one of .*, got None$"):
        paginator_from_config({"limit": 10})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"style": "cursor", "page_size": 10, "foo": 1},
            "unknown option(s) ['foo', 'page_size'] for pagination style 'cursor'; "
            "allowed: ['cursor_param', 'limit', 'limit_param', 'next_cursor_path']",
        ),
        (
            {"style": "page_number", "limit": 10},
            "unknown option(s) ['limit'] for pagination style 'page_number'; "
            "allowed: ['first_page', 'page_param', 'page_size', 'size_param', 'total_pages_path']",
        ),
        (
            {"style": "offset", "style_": 1},
            "unknown option(s) ['style_'] for pagination style 'offset'; "
            "allowed: ['limit', 'limit_param', 'offset_param', 'total_path']",
        ),
        (
            {"style": "next_url", "next": "x"},
            "unknown option(s) ['next'] for pagination style 'next_url'; "
            "allowed: ['limit', 'limit_param', 'next_url_path']",
        ),
        (
            {"style": "link_header", "next_url_path": "x"},
            "unknown option(s) ['next_url_path'] for pagination style 'link_header'; "
            "allowed: ['page_size', 'rel', 'size_param']",
        ),
        (
            {"style": "none", "limit": 10},
            "unknown option(s) ['limit'] for pagination style 'none'; allowed: []",
        ),
    ],
)
def test_from_config_unknown_option_lists_allowed(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        paginator_from_config(config)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [0, -1, -100, True, False, "10", 10.0, 2.5, None])
@pytest.mark.parametrize(
    ("style", "name"),
    [
        ("page_number", "page_size"),
        ("link_header", "page_size"),
        ("offset", "limit"),
        ("cursor", "limit"),
        ("next_url", "limit"),
    ],
)
def test_from_config_bad_size(style: str, name: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        paginator_from_config({"style": style, name: value})
    assert str(info.value) == f"pagination {name} must be a positive integer, got {value!r}"


@pytest.mark.parametrize("value", [1, 1000])
def test_from_config_good_size(value: int) -> None:
    assert paginator_from_config({"style": "offset", "limit": value}) == OffsetPaginator(limit=value)
    assert paginator_from_config({"style": "page_number", "page_size": value}) == PageNumberPaginator(
        page_size=value
    )


# --------------------------------------------------------------------------------------------------------
# RetryPolicy
# --------------------------------------------------------------------------------------------------------


def test_transient_statuses() -> None:
    assert TRANSIENT_STATUSES == {408, 425, 429, 500, 502, 503, 504}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 422, 501, 505, 200, 301])
def test_non_transient_status_is_not_retried(status: int) -> None:
    assert RetryPolicy().wait_for(1, status, rng=random.Random(1)) is None
    assert RetryPolicy().wait_for(1, status, retry_after="5", rng=random.Random(1)) is None


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, None])
@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_transient_status_waits_the_seeded_backoff(status: int | None, attempt: int) -> None:
    policy = RetryPolicy(attempts=6, base_seconds=0.5, max_seconds=30.0)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    wait = policy.wait_for(attempt, status, rng=random.Random(42))
    assert wait is not None
    assert 0 <= wait <= ceiling
    assert wait == random.Random(42).uniform(0, ceiling)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 30.0), (8, 30.0), (20, 30.0)],
)
def test_backoff_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    policy = RetryPolicy(attempts=100, base_seconds=0.5, max_seconds=30.0)
    assert policy.backoff(attempt, _CeilingRandom()) == ceiling
    assert policy.backoff(attempt, _FloorRandom()) == 0.0
    assert policy.wait_for(attempt, 503, rng=_CeilingRandom()) == ceiling


def test_backoff_samples_stay_in_range_and_use_it() -> None:
    policy = RetryPolicy(attempts=100, base_seconds=1.0, max_seconds=5.0)
    rng = random.Random(2024)
    samples = [policy.backoff(10, rng) for _ in range(500)]
    assert all(0 <= s <= 5.0 for s in samples)
    assert max(samples) > 4.5  # the cap is max_seconds, not something smaller
    assert min(samples) < 0.5  # full jitter: waits go down to ~0
    assert len(set(samples)) > 400  # jittered, not a constant


def test_backoff_without_rng_uses_module_random() -> None:
    wait = RetryPolicy(base_seconds=2.0, max_seconds=2.0).backoff(1)
    assert 0 <= wait <= 2.0


@pytest.mark.parametrize("status", [503, 429, None])
def test_gives_up_after_attempts(status: int | None) -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.wait_for(1, status, rng=random.Random(0)) is not None
    assert policy.wait_for(2, status, rng=random.Random(0)) is not None
    assert policy.wait_for(3, status, rng=random.Random(0)) is None
    assert policy.wait_for(4, status, rng=random.Random(0)) is None


def test_single_attempt_never_retries() -> None:
    assert RetryPolicy(attempts=1).wait_for(1, 503, rng=random.Random(0)) is None


def test_gives_up_at_last_attempt_even_with_retry_after() -> None:
    assert RetryPolicy(attempts=2).wait_for(2, 429, retry_after="1") is None


@pytest.mark.parametrize(
    ("retry_after", "expected"), [("7", 7.0), ("0", 0.0), (" 12 ", 12.0), ("120", 120.0), ("90", 90.0)]
)
def test_429_retry_after_seconds_is_used_exactly(retry_after: str, expected: float) -> None:
    # Not capped by max_seconds (30) and not jittered.
    assert RetryPolicy().wait_for(1, 429, retry_after=retry_after, rng=random.Random(3)) == expected


@pytest.mark.parametrize("retry_after", ["121", "3600"])
def test_429_retry_after_above_max_gives_up(retry_after: str) -> None:
    assert RetryPolicy(max_retry_after=120.0).wait_for(1, 429, retry_after=retry_after) is None


def test_429_retry_after_limit_is_configurable() -> None:
    assert RetryPolicy(max_retry_after=5.0).wait_for(1, 429, retry_after="6") is None
    assert RetryPolicy(max_retry_after=5.0).wait_for(1, 429, retry_after="5") == 5.0


def test_429_retry_after_http_date_in_the_past_is_zero() -> None:
    assert RetryPolicy().wait_for(1, 429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_429_retry_after_http_date_far_away_gives_up() -> None:
    assert RetryPolicy().wait_for(1, 429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT") is None


@pytest.mark.parametrize("retry_after", ["soon", "1.5", "-5", "Wed, 99 Foo 2015", None, ""])
def test_429_unreadable_retry_after_falls_back_to_backoff(retry_after: str | None) -> None:
    wait = RetryPolicy().wait_for(2, 429, retry_after=retry_after, rng=random.Random(11))
    assert wait == random.Random(11).uniform(0, 1.0)


def test_retry_after_is_only_honoured_for_429() -> None:
    # Documented behaviour: other transient statuses back off whatever Retry-After says.
    wait = RetryPolicy().wait_for(1, 503, retry_after="20", rng=random.Random(5))
    assert wait == random.Random(5).uniform(0, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": -1},
        {"base_seconds": -0.1},
        {"base_seconds": 10.0, "max_seconds": 5.0},
        {"max_seconds": 0.1},  # below the default base of 0.5
    ],
)
def test_invalid_policy(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^invalid retry policy RetryPolicy\("):
        RetryPolicy(**kwargs)


def test_minimal_valid_policy() -> None:
    policy = RetryPolicy(attempts=2, base_seconds=0.0, max_seconds=0.0)
    assert policy.wait_for(1, 500, rng=random.Random(1)) == 0.0
    assert RetryPolicy(base_seconds=3.0, max_seconds=3.0).backoff(5, _CeilingRandom()) == 3.0


# --------------------------------------------------------------------------------------------------------
# parse_retry_after
# --------------------------------------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  45\t", 45.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 UTC", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 09:29:00 +0200", 90.0),
        ("Wed, 21 Oct 2015 03:30:00 -0400", 150.0),
        ("Wed, 21 Oct 2015 07:27:30 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past: no wait, never negative
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize("value", ["", "   ", "soon", "1.5", "-5", "1e3", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_parse_retry_after_unreadable(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_default_now() -> None:
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") > 10**9
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b9"])
def test_parse_retry_after_non_decimal_digits_are_unreadable(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None
    assert RetryPolicy().wait_for(1, 429, retry_after=value, rng=random.Random(1)) == random.Random(
        1
    ).uniform(0, 0.5)


# --------------------------------------------------------------------------------------------------------
# IncrementalSync.params
# --------------------------------------------------------------------------------------------------------


def test_params_full_sync_without_cursor_or_start() -> None:
    sync = IncrementalSync("updated_at", "updated_since")
    assert sync.params(None) == {}
    assert sync.params("") == {}


def test_params_first_run_uses_start() -> None:
    sync = IncrementalSync("updated_at", "updated_since", start="2024-01-01T00:00:00Z")
    assert sync.params(None) == {"updated_since": "2024-01-01T00:00:00Z"}
    assert sync.params("") == {"updated_since": "2024-01-01T00:00:00Z"}


def test_params_cursor_wins_over_start() -> None:
    sync = IncrementalSync("updated_at", "since", start="2024-01-01T00:00:00Z")
    assert sync.params("2024-06-01T12:00:00Z") == {"since": "2024-06-01T12:00:00Z"}
    assert IncrementalSync("updated_at", "since").params("2024-06-01") == {"since": "2024-06-01"}


def test_params_empty_start_is_a_full_sync() -> None:
    assert IncrementalSync("updated_at", "since", start="").params(None) == {}


# --------------------------------------------------------------------------------------------------------
# IncrementalSync.advance
# --------------------------------------------------------------------------------------------------------

SYNC = IncrementalSync("updated_at", "updated_since")


def records(*values: Any) -> list[dict[str, Any]]:
    return [{"id": i, "updated_at": v} for i, v in enumerate(values)]


def test_advance_picks_greatest_datetime() -> None:
    values = ("2024-01-02T00:00:00Z", "2024-03-01T00:00:00Z", "2024-02-01T00:00:00Z")
    assert SYNC.advance(None, records(*values)) == "2024-03-01T00:00:00Z"


def test_advance_from_existing_cursor() -> None:
    got = SYNC.advance("2024-01-01T00:00:00Z", records("2024-01-05T00:00:00Z", "2023-12-31T00:00:00Z"))
    assert got == "2024-01-05T00:00:00Z"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Z and +00:00 mix: compared as instants, the later one wins.
        (("2024-01-01T10:00:00+00:00", "2024-01-01T11:00:00Z"), "2024-01-01T11:00:00Z"),
        (("2024-01-01T11:00:00Z", "2024-01-01T10:00:00+00:00"), "2024-01-01T11:00:00Z"),
        # 10:00+02:00 is 08:00Z: earlier than 09:00Z although it sorts later as text.
        (("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00Z"), "2024-01-01T09:00:00Z"),
        (("2024-01-01T09:00:00Z", "2024-01-01T10:00:00+02:00"), "2024-01-01T09:00:00Z"),
        # 05:00-05:00 is 10:00Z: later than 09:30Z although it sorts earlier as text.
        (("2024-01-01T09:30:00Z", "2024-01-01T05:00:00-05:00"), "2024-01-01T05:00:00-05:00"),
        # Lowercase z and fractional seconds.
        (("2024-01-01T09:00:00.500z", "2024-01-01T09:00:00.250Z"), "2024-01-01T09:00:00.500z"),
        # Naive values are UTC.
        (("2024-01-01T09:00:00", "2024-01-01T09:30:00+01:00"), "2024-01-01T09:00:00"),
        # A date alone is midnight UTC.
        (("2024-01-01T23:59:59Z", "2024-01-02"), "2024-01-02"),
        # Space separator.
        (("2024-01-01 12:00:00+00:00", "2024-01-01T11:00:00Z"), "2024-01-01 12:00:00+00:00"),
    ],
)
def test_advance_compares_datetimes_as_instants(values: tuple[str, ...], expected: str) -> None:
    assert SYNC.advance(None, records(*values)) == expected


def test_advance_keeps_the_api_text_of_the_max_value() -> None:
    got = SYNC.advance("2024-01-01T00:00:00+00:00", records("2024-05-05T05:05:05.123000Z"))
    assert got == "2024-05-05T05:05:05.123000Z"


def test_advance_keeps_old_cursor_when_nothing_is_newer() -> None:
    cursor = "2024-06-01T00:00:00Z"
    assert SYNC.advance(cursor, records("2024-05-01T00:00:00Z", "2024-01-01T00:00:00Z")) == cursor


def test_advance_keeps_old_cursor_text_on_equal_instant() -> None:
    # Same instant in another format is not "greater": the stored text does not flap.
    cursor = "2024-06-01T00:00:00Z"
    assert SYNC.advance(cursor, records("2024-06-01T02:00:00+02:00", "2024-06-01T00:00:00+00:00")) == cursor


def test_advance_first_of_equal_values_wins() -> None:
    assert SYNC.advance(None, records("2024-06-01T00:00:00Z", "2024-06-01T00:00:00+00:00")) == (
        "2024-06-01T00:00:00Z"
    )


@pytest.mark.parametrize("cursor", [None, "2024-01-01T00:00:00Z"])
def test_advance_without_records_keeps_cursor(cursor: str | None) -> None:
    assert SYNC.advance(cursor, []) == cursor


def test_advance_ignores_missing_none_and_empty_values() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1},
        {"id": 2, "updated_at": None},
        {"id": 3, "updated_at": ""},
        {"id": 4, "updated_at": "2024-02-01T00:00:00Z"},
        {"id": 5, "updated_at": None},
    ]
    assert SYNC.advance(None, rows) == "2024-02-01T00:00:00Z"
    assert SYNC.advance("2024-03-01T00:00:00Z", rows) == "2024-03-01T00:00:00Z"


def test_advance_only_ignorable_values_keeps_cursor() -> None:
    rows: list[dict[str, Any]] = [{"id": 1}, {"updated_at": None}, {"updated_at": ""}]
    assert SYNC.advance(None, rows) is None
    assert SYNC.advance("2024-01-01", rows) == "2024-01-01"


def test_advance_accepts_any_iterable() -> None:
    def gen() -> Iterator[dict[str, Any]]:
        yield {"updated_at": "2024-01-01T00:00:00Z"}
        yield {"updated_at": "2024-01-03T00:00:00Z"}

    assert SYNC.advance(None, gen()) == "2024-01-03T00:00:00Z"


@pytest.mark.parametrize(
    ("cursor", "values", "expected"),
    [
        (None, (9, 10), "10"),
        (None, (10, 9), "10"),
        (None, ("9", "10"), "10"),
        (None, ("10", "9"), "10"),
        ("9", (10,), "10"),
        ("10", (9,), "10"),
        ("10", ("9", 2), "10"),
        (None, (1.5, 1.25), "1.5"),
        (None, ("1.25", "1.5"), "1.5"),
        (None, ("-3", "-20"), "-3"),
        (None, ("1700000000", "999999999"), "1700000000"),  # epoch seconds crossing a digit
        (None, (999, "1000"), "1000"),
    ],
)
def test_advance_numeric_cursor_compares_numerically(
    cursor: str | None, values: tuple[Any, ...], expected: str
) -> None:
    got = IncrementalSync("seq", "since_seq").advance(cursor, [{"seq": v} for v in values])
    assert got == expected
    assert isinstance(got, str)


def test_advance_returns_text_for_numeric_values() -> None:
    assert IncrementalSync("v", "p").advance(None, [{"v": 42}]) == "42"


def test_advance_plain_text_compares_as_text() -> None:
    sync = IncrementalSync("v", "p")
    assert sync.advance(None, [{"v": "apple"}, {"v": "pear"}, {"v": "banana"}]) == "pear"
    assert sync.advance("zzz", [{"v": "pear"}]) == "zzz"


def test_advance_uses_cursor_field_only() -> None:
    sync = IncrementalSync("modified", "since")
    rows = [{"modified": "2024-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z"}]
    assert sync.advance(None, rows) == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("cursor", "values", "expected"),
    [
        (None, ("9999999", "20240101"), "20240101"),
        ("9999999", ("10000101",), "10000101"),
        (None, ("12340102", "12340100"), "12340102"),
    ],
)
def test_advance_numeric_strings_that_look_like_basic_dates(
    cursor: str | None, values: tuple[str, ...], expected: str
) -> None:
    assert IncrementalSync("seq", "p").advance(cursor, [{"seq": v} for v in values]) == expected


# --------------------------------------------------------------------------------------------------------
# incremental_from_config
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, {}])
def test_incremental_from_config_off(config: dict[str, Any] | None) -> None:
    assert incremental_from_config(config) is None


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"cursor_field": "updated_at", "param": "updated_since"},
            IncrementalSync("updated_at", "updated_since", None),
        ),
        (
            {"cursor_field": "updated_at", "param": "since", "start": "2024-01-01T00:00:00Z"},
            IncrementalSync("updated_at", "since", "2024-01-01T00:00:00Z"),
        ),
        ({"cursor_field": "seq", "param": "after", "start": 0}, IncrementalSync("seq", "after", "0")),
        ({"cursor_field": "seq", "param": "after", "start": None}, IncrementalSync("seq", "after", None)),
    ],
)
def test_incremental_from_config(config: dict[str, Any], expected: IncrementalSync) -> None:
    assert incremental_from_config(config) == expected


def test_incremental_from_config_numeric_start_is_sent() -> None:
    sync = incremental_from_config({"cursor_field": "seq", "param": "after", "start": 0})
    assert sync is not None
    assert sync.params(None) == {"after": "0"}


def test_incremental_from_config_unknown_keys() -> None:
    with pytest.raises(ValueError) as info:
        incremental_from_config({"cursor_field": "a", "param": "b", "stop": "x", "field": "y"})
    assert str(info.value) == (
        "unknown incremental option(s) ['field', 'stop']; allowed: ['cursor_field', 'param', 'start']"
    )


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"param": "since"}, ["cursor_field"]),
        ({"cursor_field": "updated_at"}, ["param"]),
        ({"cursor_field": "", "param": "since"}, ["cursor_field"]),
        ({"cursor_field": "updated_at", "param": None}, ["param"]),
        ({"start": "2024-01-01"}, ["cursor_field", "param"]),
    ],
)
def test_incremental_from_config_missing(config: dict[str, Any], missing: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        incremental_from_config(config)
    assert str(info.value) == f"incremental needs {missing}"


@pytest.mark.parametrize("model", PAGINATION_MODELS, ids=lambda m: m.__name__)
def test_pagination_config_models_mirror_the_strategies(model: Any) -> None:
    """The step model's typed options and the run-time strategies name the same options and defaults."""
    style = model.model_fields["style"].annotation.__args__[0]
    strategy = PAGINATORS[style]
    declared = {f.name: f.default for f in dataclasses.fields(strategy)} if strategy is not Paginator else {}
    typed = {name: field.default for name, field in model.model_fields.items() if name != "style"}
    assert typed == declared
    built = paginator_from_config(model(style=style).model_dump())
    assert type(built) is strategy and vars(built) == vars(strategy())
