"""Sources whose tables live in a Kusto engine, one small module per kind behind one interface:

    loganalytics://<workspace-id>[,<workspace-id>...]    remote/loganalytics.py
    kusto://<cluster-host>[:port]/<database>             remote/adx.py

    source = remote.from_url(url, credential=None, client=None)
    scan = source.scan(table, start, end, columns, prefilter=True)   # a sources.Scan

Both send the queries include/detection/kusto.py renders (window, the rule's first `where`,
projection; a summarising profile), so the filtering happens where the rows are. The SDKs are
imported only when a source of their kind is used.
"""

from __future__ import annotations

import re
from importlib import import_module

from ..errors import UsageError
from .base import RemoteSource

# scheme -> (module, class), imported on first use
SOURCES = {
    "loganalytics": ("loganalytics", "LogAnalyticsSource"),
    "kusto": ("adx", "AdxSource"),
}


# `Path("kusto://host/db")` is "kusto:/host/db": a URL that went through a Path is still known
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+")


def scheme(value) -> str | None:
    found = _URL.match(str(value))
    return found.group(1).lower() if found else None


def normalize(value) -> str:
    """The URL with `scheme://`, also after a Path collapsed its slashes."""
    text = str(value).strip()
    if "://" in text:
        return text
    return _URL.sub(lambda m: f"{m.group(1)}://", text, count=1)


def is_remote(value) -> bool:
    return scheme(value) in SOURCES


def source_class(name: str) -> type[RemoteSource]:
    if name not in SOURCES:
        raise UsageError(f"no remote source {name!r} (known: {', '.join(sorted(SOURCES))})")
    module, cls = SOURCES[name]
    return getattr(import_module(f"{__name__}.{module}"), cls)


def from_url(url: str, credential=None, client=None, **settings) -> RemoteSource:
    """The source a `loganalytics://` or `kusto://` URL names."""
    kind = scheme(url)
    if kind not in SOURCES:
        raise UsageError(
            f"not a remote source URL: {url!r} (expected "
            f"{' or '.join(f'{s}://...' for s in SOURCES)})"
        )
    return source_class(kind).from_url(
        normalize(url), credential=credential, client=client, **settings
    )
