"""The one written form of an endpoint: its URL path and its resolved IP.

Two deliveries went to the same endpoint when their paths and IPs are equal once written
alike: the scheme, host, port, query and fragment of a URL never make two paths differ, nor
does how a percent-escape or an IPv6 address is spelt.
"""

from __future__ import annotations

import ipaddress
import string

import polars as pl

_HEX = "0123456789ABCDEFabcdef"
# RFC 3986 unreserved characters: a percent-escape of one of them means the character itself.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _escape_forms() -> dict[str, str]:
    """Every spelling of a percent-escape (`%4a`, `%4A`) -> its one form: the character when
    it is unreserved, else the escape with uppercase hex."""
    forms = {}
    for high in _HEX:
        for low in _HEX:
            escape = f"%{high}{low}"
            character = chr(int(escape[1:], 16))
            forms[escape] = character if character in _UNRESERVED else escape.upper()
    return forms


_ESCAPES = _escape_forms()


def url_path(url: pl.Expr) -> pl.Expr:
    """The path of a webhook URL (no scheme, host, port, query or fragment), percent-escapes
    in one form (unreserved characters decoded, the hex of the others uppercase); `/` when
    empty. The escapes are rewritten left to right in one pass, so `%2541` stays `%2541`."""
    path = url.str.extract(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://)?[^/?#]*([^?#]*)", 1)
    path = path.str.replace_many(list(_ESCAPES), list(_ESCAPES.values()))
    return path.str.replace(r"^$", "/")


def url_paths(urls: pl.Series) -> pl.Series:
    """`url_path` of each URL, computed once per distinct URL: an app calls few, and parsing
    every row costs more than reading it."""
    distinct = urls.drop_nulls().unique()
    paths = pl.select(url_path(pl.lit(distinct))).to_series()
    return urls.replace_strict(distinct, paths, default=None, return_dtype=pl.String)


def endpoint_path(url: pl.Expr) -> pl.Expr:
    """`url_path` of a webhook URL, each distinct URL of a batch parsed once (`url_paths`)."""
    return url.cast(pl.String).map_batches(url_paths, return_dtype=pl.String)


def _ip_form(text: str) -> str:
    """One written form of an IP address: brackets dropped, IPv6 compressed and lowercase, an
    IPv4-mapped IPv6 address as its IPv4 address; anything else trimmed and lowercase."""
    bare = text.strip().removeprefix("[").removesuffix("]").lower()
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return bare
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _ip_forms(ips: pl.Series) -> pl.Series:
    """`_ip_form` of each IP, computed once per distinct value and mapped back by a join."""
    distinct = ips.drop_nulls().unique()
    forms = pl.Series([_ip_form(ip) for ip in distinct], dtype=pl.String)
    return ips.replace_strict(distinct, forms, default=None, return_dtype=pl.String)


def endpoint_ips(ips: pl.Series) -> pl.Series:
    """`endpoint_ip` of a series already read: each distinct value parsed once."""
    return _ip_forms(ips.cast(pl.String))


def endpoint_ip(ip: pl.Expr) -> pl.Expr:
    """The resolved IP in one written form (see `_ip_form`). Python parses only the distinct
    values of each batch: a few endpoints, however many deliveries."""
    return ip.cast(pl.String).map_batches(_ip_forms, return_dtype=pl.String)
