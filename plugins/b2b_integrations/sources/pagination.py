"""How to walk a paginated API: one small strategy object per pagination style, chosen by config.

Strategies are pure: given the page just received they say which request comes next, or that there is
none. The HTTP client (``clients/http_api.py``) does the I/O. Styles, as ``pagination.style``:

* ``page_number``: ``?page=1&per_page=100``, then 2, 3 ... until a short or empty page (or ``total_pages``);
* ``offset``: ``?offset=0&limit=100``, then 100, 200 ... until a short or empty page (or ``total``);
* ``cursor``: ``?cursor=<token>``, the token read from the body (``next_cursor_path``), until it is empty;
* ``next_url``: the next page's URL read from the body (``next_url_path``), until it is empty;
* ``link_header``: the ``rel="next"`` URL of the RFC 8288 (ex-5988) ``Link`` header, until there is none;
* ``none``: a single request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urljoin


@dataclass(frozen=True)
class PageRequest:
    """The next request: a URL (absolute, or relative to the connection's base URL) and query params."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PageResponse:
    """What a strategy may look at in the page just received."""

    request: PageRequest
    url: str
    """The URL actually requested (absolute), for resolving relative next links."""
    body: Any
    headers: Mapping[str, str]
    record_count: int


def get_path(document: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` (``data.items``) in parsed JSON; None if any part is missing.

    An empty path is the document itself.
    """
    value = document
    for part in path.split(".") if path else []:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def select_records(body: Any, path: str | None) -> list[Any]:
    """The records of a page at ``path``; ``ValueError`` naming the path when they are not a list."""
    records = get_path(body, path)
    if isinstance(records, list):
        return records
    where = f"records_path {path!r}" if path else "the top level (set records_path?)"
    found = "nothing" if records is None else type(records).__name__
    raise ValueError(f"expected a list of records at {where}, found {found}")


class Paginator:
    """Base strategy: the first request, then each next one."""

    style = "none"

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, dict(params))

    def next(self, page: PageResponse) -> PageRequest | None:
        return None


@dataclass(frozen=True)
class PageNumberPaginator(Paginator):
    style = "page_number"
    page_param: str = "page"
    size_param: str | None = "per_page"
    page_size: int = 100
    first_page: int = 1
    total_pages_path: str | None = None

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        sized = {self.size_param: self.page_size} if self.size_param else {}
        return PageRequest(url, {**params, **sized, self.page_param: self.first_page})

    def next(self, page: PageResponse) -> PageRequest | None:
        number = int(page.request.params[self.page_param])
        total = _int_or_none(get_path(page.body, self.total_pages_path))
        if total is not None:
            done = number >= total + self.first_page - 1
        else:
            done = page.record_count == 0 or (
                self.size_param is not None and page.record_count < self.page_size
            )
        return (
            None
            if done
            else PageRequest(page.request.url, {**page.request.params, self.page_param: number + 1})
        )


@dataclass(frozen=True)
class OffsetPaginator(Paginator):
    style = "offset"
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    total_path: str | None = None

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, {**params, self.offset_param: 0, self.limit_param: self.limit})

    def next(self, page: PageResponse) -> PageRequest | None:
        offset = int(page.request.params[self.offset_param]) + page.record_count
        total = _int_or_none(get_path(page.body, self.total_path))
        done = page.record_count == 0 or (total is not None and offset >= total)
        if total is None:
            done = done or page.record_count < self.limit
        return (
            None
            if done
            else PageRequest(page.request.url, {**page.request.params, self.offset_param: offset})
        )


@dataclass(frozen=True)
class CursorPaginator(Paginator):
    style = "cursor"
    cursor_param: str = "cursor"
    next_cursor_path: str = "next_cursor"
    limit_param: str | None = "limit"
    limit: int = 100

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        sized = {self.limit_param: self.limit} if self.limit_param else {}
        return PageRequest(url, {**params, **sized})

    def next(self, page: PageResponse) -> PageRequest | None:
        token = get_path(page.body, self.next_cursor_path)
        if token in (None, "") or page.record_count == 0:
            return None
        if token == page.request.params.get(self.cursor_param):
            raise ValueError(f"the API returned the same cursor twice ({self.next_cursor_path!r}); stopping")
        return PageRequest(page.request.url, {**page.request.params, self.cursor_param: token})


@dataclass(frozen=True)
class NextUrlPaginator(Paginator):
    style = "next_url"
    next_url_path: str = "next"
    limit_param: str | None = None
    limit: int = 100

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        sized = {self.limit_param: self.limit} if self.limit_param else {}
        return PageRequest(url, {**params, **sized})

    def next(self, page: PageResponse) -> PageRequest | None:
        link = get_path(page.body, self.next_url_path)
        if not link or page.record_count == 0:
            return None
        # The next URL carries every query parameter itself.
        return _follow(page, str(link))


@dataclass(frozen=True)
class LinkHeaderPaginator(Paginator):
    style = "link_header"
    rel: str = "next"
    size_param: str | None = None
    page_size: int = 100

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        sized = {self.size_param: self.page_size} if self.size_param else {}
        return PageRequest(url, {**params, **sized})

    def next(self, page: PageResponse) -> PageRequest | None:
        header = next((v for k, v in page.headers.items() if k.lower() == "link"), "")
        link = parse_link_header(header).get(self.rel)
        return _follow(page, link) if link else None


# One link: <url>, then ;-separated attributes whose quoted values may hold "," and ";".
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,"=]+(?:=\s*(?:"[^"]*"|[^;,]*))?\s*)*)')
_REL = re.compile(r';\s*rel\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def parse_link_header(value: str) -> dict[str, str]:
    """``Link`` header -> {rel: url}; each of a space-separated ``rel`` list maps to the URL."""
    links: dict[str, str] = {}
    for match in _LINK.finditer(value or ""):
        url, attributes = match.group(1).strip(), match.group(2)
        for rel_match in _REL.finditer(attributes):
            for rel in rel_match.group(1).split():
                links.setdefault(rel.lower(), url)
    return links


def _follow(page: PageResponse, link: str) -> PageRequest:
    target = urljoin(page.url, link)
    if target == page.url:
        raise ValueError(f"the API's next link points at the page just read ({target}); stopping")
    return PageRequest(target, {})


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


PAGINATORS: dict[str, type[Paginator]] = {
    cls.style: cls
    for cls in (
        Paginator,
        PageNumberPaginator,
        OffsetPaginator,
        CursorPaginator,
        NextUrlPaginator,
        LinkHeaderPaginator,
    )
}


def paginator_from_config(config: Mapping[str, Any] | None) -> Paginator:
    """Build the strategy from ``{style: ..., <option>: ...}``; ``ValueError`` with a clear message."""
    config = dict(config or {"style": "none"})
    style = config.pop("style", None)
    if style not in PAGINATORS:
        raise ValueError(f"pagination style must be one of {sorted(PAGINATORS)}, got {style!r}")
    cls = PAGINATORS[style]
    allowed = sorted(f.name for f in fields(cls)) if cls is not Paginator else []
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for pagination style {style!r}; allowed: {allowed}")
    for name in ("page_size", "limit"):
        if name in config and (
            isinstance(config[name], bool) or not isinstance(config[name], int) or config[name] < 1
        ):
            raise ValueError(f"pagination {name} must be a positive integer, got {config[name]!r}")
    return cls(**config)
