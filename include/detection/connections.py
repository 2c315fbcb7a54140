"""Airflow-style connections without importing Airflow.

The library never imports Airflow. A connection reaches it either as an object the Airflow layer
looked up (`airflow.sdk.Connection.get(conn_id)`, passed in and read by duck typing), or from the
environment variable Airflow itself reads, `AIRFLOW_CONN_<CONN_ID>` (URI or JSON form).

Secrets found here are registered with `redact`, so no log line, stored error or exception
message the detection code writes carries them.

Masking has to survive what happens to a secret between us and the text we mask: a server that
echoes it back JSON-escaped (`\\"`, `\\/`, `\\u00e9`, escaped twice when an error embeds
another), URL-encoded, HTML-escaped or with its whitespace collapsed, and the base64 of
`user:password` a Basic Authorization header carries. A registered secret therefore becomes one
pattern that matches it in any mixture of those encodings, character by character, rather than a
list of literal variants that always misses one combination. Credentials we never registered are
masked by shape: Authorization header values, URL userinfo, secret-ish query parameters and
`password=` / `"token": "..."` pairs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import UsageError
from .text import printable

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words

_LOCK = threading.Lock()
_SECRETS: set[str] = set()
_PATTERN: re.Pattern | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret so `redact` masks it, raw and in every encoding a server or a log may
    give it (see the module docstring)."""
    global _PATTERN
    if value is None:
        return
    core = str(value).strip()
    if len(core) < _MIN_SECRET:
        return
    with _LOCK:
        if core not in _SECRETS:
            _SECRETS.add(core)
            _PATTERN = None


def basic_credentials(user: str | None, password: str | None) -> list[str]:
    """The base64 of `user:password` as a Basic Authorization header carries it (requests
    encodes latin-1 when it can, other clients UTF-8)."""
    if not password:
        return []
    out = []
    for encoding in ("latin-1", "utf-8"):
        try:
            raw = f"{user or ''}:{password}".encode(encoding)
        except UnicodeEncodeError:
            continue
        out.append(base64.b64encode(raw).decode("ascii"))
    return list(dict.fromkeys(out))


def register_basic_auth(user: str | None, password: str | None) -> None:
    """Register a Basic auth password and the header value derived from it."""
    register_secret(password)
    for token in basic_credentials(user, password):
        register_secret(token)


# Query parameters and fields whose value is a credential.
QUERY_KEYS = (
    "password",
    "pass",
    "pwd",
    "token",
    "access_token",
    "secret",
    "sig",
    "key",
    "api_key",
    "apikey",
    "code",
)
_FIELD_KEYS = (
    r"(?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token"
    r"|api_?key)"
)


def register_url(url: str | None) -> None:
    """Register the credentials a URL carries: the userinfo password and the values of
    secret-ish query parameters (`postgresql://u@h/db?password=...`, `...?token=...`)."""
    if not url or "://" not in str(url):
        return
    try:
        parts = urlsplit(str(url))
        password = parts.password
    except ValueError:  # e.g. a bad port: mask what looks like userinfo anyway
        parts, password = None, None
    if password:
        register_secret(unquote(password))
        register_secret(password)
    query = parts.query if parts is not None else str(url).partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in QUERY_KEYS:
            register_secret(value)


# --- the pattern of one secret --------------------------------------------------------------------

# A whitespace run inside a secret, as text collapsing, JSON, URL and HTML encodings leave it.
_WS = (
    r"(?:\s|\\+[ntr]|\\+u(?i:00(?:20|09|0a|0d|a0))|%(?i:20|09|0a|0d)|\+"
    r"|&\#(?:32|9|10|13|160);|&\#(?i:x(?:20|9|a|d|a0));|&nbsp;)+"
)
_HTML_NAMED = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&\\#39;|&apos;"}


def _char(c: str) -> str:
    o = ord(c)
    alts = [re.escape(c)]
    if o > 0xFFFF:  # JSON writes it as a surrogate pair
        hi, lo = 0xD800 + ((o - 0x10000) >> 10), 0xDC00 + ((o - 0x10000) & 0x3FF)
        alts.append(rf"\\+u(?i:{hi:04x})\\+u(?i:{lo:04x})")
    else:
        alts.append(rf"\\+u(?i:{o:04x})")
    if c in "\"\\/'":
        alts.append(r"\\+" + re.escape(c))
    alts.append("".join(rf"%(?i:{b:02x})" for b in c.encode("utf-8")))
    alts.append(rf"&\#0*{o};|&\#(?i:x0*{o:x});")
    if c in _HTML_NAMED:
        alts.append(_HTML_NAMED[c])
    return "(?:" + "|".join(alts) + ")"


def _secret_pattern(secret: str) -> str:
    out = []
    for chunk in re.split(r"(\s+)", secret):
        if not chunk:
            continue
        out.append(_WS if chunk.isspace() else "".join(_char(c) for c in chunk))
    return "".join(out)


def _pattern() -> re.Pattern | None:
    global _PATTERN
    with _LOCK:
        if _PATTERN is None and _SECRETS:
            ordered = sorted(_SECRETS, key=len, reverse=True)
            _PATTERN = re.compile("|".join(_secret_pattern(s) for s in ordered))
        return _PATTERN


# --- credentials masked by their shape ------------------------------------------------------------

_VALUE = r"[^\s\"'&#<>\\,;)}\]]+"
_SHAPES: list[tuple[re.Pattern, str]] = [
    # scheme://user:password@host (also with JSON-escaped slashes)
    (re.compile(r"(:(?:\\*/){2}[^/\s:@\"']*):[^@/\s\"']+@"), rf"\1:{MASK}@"),
    # ?token=..., &password=... (also after a JSON-escaped &)
    (re.compile(rf"((?:[?&;]|\\u0026|&amp;)(?i:{'|'.join(QUERY_KEYS)})=){_VALUE}"), rf"\1{MASK}"),
    # Authorization: <scheme> <credentials> (a header echoed, or a dict of headers)
    (
        re.compile(
            r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?i:basic|bearer|token|digest|negotiate|apikey)\s+)?)[^\s\"',;}]+"
        ),
        rf"\1{MASK}",
    ),
    # password=..., "token": "..." (libpq DSNs, JSON and Python reprs)
    (re.compile(rf"(\b(?i:{_FIELD_KEYS})\s*=\s*[\"']?){_VALUE}"), rf"\1{MASK}"),
    (re.compile(rf"([\"'](?i:{_FIELD_KEYS})[\"']\s*:\s*[\"'])(?:[^\"'\\]|\\.)+"), rf"\1{MASK}"),
]
_BASIC = re.compile(r"\b((?i:basic)\s+)([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")
_BEARER = re.compile(r"\b((?i:bearer)\s+)([A-Za-z0-9\-._~+/]{8,}=*)")


def _basic(m: re.Match) -> str:
    """`Basic <base64>` is masked when it decodes to `user:password`, not when it is prose."""
    try:
        decoded = base64.b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4), validate=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    return m.group(1) + MASK if b":" in decoded else m.group(0)


def _bearer(m: re.Match) -> str:
    token = m.group(2)
    looks_random = len(token) >= 20 or re.search(r"[0-9\-._~+/=]", token)
    return m.group(1) + MASK if looks_random else m.group(0)


def redact(text: str) -> str:
    """`text` with every registered secret (in any of its encodings) and every credential
    recognisable by its shape masked. Mask before cutting a text short: a secret cut in half
    is no longer recognisable."""
    text = str(text)
    pattern = _pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    text = _BASIC.sub(_basic, text)
    return _BEARER.sub(_bearer, text)


def snippet(text: str, limit: int = 200, window: int = 4096) -> str:
    """A short, masked, single-line excerpt of an untrusted text (an HTTP error body): masked
    first, then whitespace collapsed, control characters escaped, and cut to `limit`. Only the
    first `window` characters are read; if the text is longer, the end of that window is dropped
    too, since a secret cut by the window's edge is no longer recognisable."""
    text = str(text)
    if len(text) > window:
        longest = max((len(s) for s in _SECRETS), default=0)
        masked = redact(text[:window])
        masked = masked[: max(0, len(masked) - 6 * longest - 64)]  # an encoded secret is longer
    else:
        masked = redact(text)
    short = printable(" ".join(masked.split()))
    return short if len(short) <= limit else short[: limit - 3] + "..."


class RedactingFilter(logging.Filter):
    """Masks secrets in records of loggers we do not write ourselves (urllib3 logs request
    lines, query strings included, at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_FILTER = RedactingFilter()


def mask_logger(name: str) -> None:
    """Attach the redacting filter to logger `name` (idempotent)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


@dataclass(frozen=True)
class Conn:
    """The fields of an Airflow Connection that the detection code reads."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    port: int | None = None
    login: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        register_secret(self.password)
        for key, value in self.extra.items():
            if re.search(r"secret|token|password|key", key, re.I) and isinstance(value, str):
                register_secret(value)

    @classmethod
    def from_uri(cls, conn_id: str, uri: str) -> "Conn":
        parts = urlsplit(uri)
        extra = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "__extra__" in extra:
            extra = json.loads(extra["__extra__"])
        hostport = re.match(r"^(.*?)(?::(\d+))?$", parts.netloc.rsplit("@", 1)[-1])
        return cls(
            conn_id=conn_id,
            conn_type=parts.scheme.replace("-", "_"),
            host=unquote(hostport.group(1)),
            port=int(hostport.group(2)) if hostport.group(2) else None,
            login=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            schema=unquote(parts.path.lstrip("/")),
            extra=extra,
        )

    @classmethod
    def from_json(cls, conn_id: str, text: str) -> "Conn":
        data = json.loads(text)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return cls(
            conn_id=conn_id,
            conn_type=data.get("conn_type") or "",
            host=data.get("host") or "",
            port=data.get("port"),
            login=data.get("login") or "",
            password=data.get("password") or "",
            schema=data.get("schema") or "",
            extra=extra,
        )

    @classmethod
    def from_object(cls, obj: Any) -> "Conn":
        """An airflow.sdk Connection (or anything with its attributes)."""
        if isinstance(obj, Conn):
            return obj
        extra = getattr(obj, "extra_dejson", None)
        if extra is None:
            raw = getattr(obj, "extra", None) or {}
            extra = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        return cls(
            conn_id=getattr(obj, "conn_id", "") or "",
            conn_type=obj.conn_type or "",
            host=obj.host or "",
            port=obj.port,
            login=obj.login or "",
            password=obj.password or "",
            schema=obj.schema or "",
            extra=dict(extra),
        )

    def base_url(self) -> str:
        """The HTTP(S) base URL: `host` if it is a URL, else scheme://host[:port][/path].

        The scheme is `extra.scheme`, else the conn_type when it is http/https (Airflow's http
        connections may also keep it in `schema`), else https."""
        if "://" in self.host:
            url = self.host.rstrip("/")
        else:
            scheme = self.extra.get("scheme") or (
                self.schema
                if self.schema in ("http", "https")
                else self.conn_type
                if self.conn_type in ("http", "https")
                else "https"
            )
            url = f"{scheme}://{self.host}" + (f":{self.port}" if self.port else "")
            if self.schema and self.schema not in ("http", "https"):
                url += "/" + self.schema.strip("/")
        path = self.extra.get("endpoint") or self.extra.get("path")
        return url + ("/" + str(path).lstrip("/") if path else "")


def env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def from_env(conn_id: str) -> Conn | None:
    """The connection Airflow would read from `AIRFLOW_CONN_<CONN_ID>`, or None."""
    value = os.environ.get(env_name(conn_id))
    if not value:
        return None
    value = value.strip()
    try:
        return (
            Conn.from_json(conn_id, value)
            if value.startswith("{")
            else Conn.from_uri(conn_id, value)
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{env_name(conn_id)} is not a valid connection URI or JSON ({type(exc).__name__})"
        ) from None


Resolver = Callable[[str], Any]


def lookup(conn_id: str, resolver: Resolver | None = None) -> Conn | None:
    """A connection from `resolver` (the Airflow layer's lookup) or, failing that, the env."""
    if resolver is not None:
        found = resolver(conn_id)
        if found is not None:
            return Conn.from_object(found)
    return from_env(conn_id)


# --- the alert store ------------------------------------------------------------------------------

_LIBPQ_PARAMS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "connect_timeout",
    "application_name",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
}


def is_url(value: str) -> bool:
    return "://" in value


def looks_like_path(value: str) -> bool:
    return (
        "/" in value
        or "\\" in value
        or value.startswith(".")
        or value.endswith((".db", ".sqlite", ".sqlite3"))
    )


def store_url_from_connection(conn: Conn) -> str:
    """A connection as an alert-store URL: PostgreSQL, or SQLite (host or schema is the path)."""
    kind = conn.conn_type.lower()
    if kind in ("postgres", "postgresql"):
        register_secret(conn.password)
        auth = quote(conn.login, safe="") + (
            ":" + quote(conn.password, safe="") if conn.password else ""
        )
        netloc = (
            (auth + "@" if auth else "")
            + (conn.host or "127.0.0.1")
            + (f":{conn.port}" if conn.port else "")
        )
        params = {k: v for k, v in conn.extra.items() if k in _LIBPQ_PARAMS}
        return f"postgresql://{netloc}/{quote(conn.schema or 'postgres')}" + (
            f"?{urlencode(params)}" if params else ""
        )
    if kind == "sqlite":
        return conn.host or conn.schema
    raise UsageError(
        f"connection {conn.conn_id!r} has type {conn.conn_type!r}: the alert store "
        f"needs a postgres or sqlite connection"
    )


def resolve_store(value: str, resolver: Resolver | None = None) -> str:
    """DETECTION_ALERT_STORE as a URL or path: a URL or path as is, else a connection id."""
    if is_url(value) or looks_like_path(value):
        register_url(value)  # postgresql://u@h/db?password=...: masked wherever the URL shows
        return value
    conn = lookup(value, resolver)
    if conn is None:
        raise UsageError(
            f"DETECTION_ALERT_STORE={value!r} is neither a URL nor a path, and no "
            f"connection {value!r} is defined (Airflow connection or {env_name(value)})"
        )
    return store_url_from_connection(conn)
