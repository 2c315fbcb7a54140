"""Airflow-style connections without importing Airflow.

The library never imports Airflow. A connection reaches it either as an object the Airflow layer
looked up (`airflow.sdk.Connection.get(conn_id)`, passed in and read by duck typing), or from the
environment variable Airflow itself reads, `AIRFLOW_CONN_<CONN_ID>` (URI or JSON form).

Secrets found here are registered with `redact`, so no log line, stored error or exception
message the detection code writes carries them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import UsageError

_SECRETS: set[str] = set()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so `redact` masks it (and its URL-encoded form)."""
    if value and len(str(value)) >= 4:
        value = str(value)
        _SECRETS.update({value, quote(value, safe=""), quote(value)})


def redact(text: str) -> str:
    """`text` with every registered secret and URL credentials masked."""
    text = str(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return re.sub(r"(://[^/\s:@]*):[^@/\s]+@", rf"\1:{MASK}@", text)


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
        return cls(conn_id=conn_id, conn_type=parts.scheme.replace("-", "_"),
                   host=unquote(hostport.group(1)),
                   port=int(hostport.group(2)) if hostport.group(2) else None,
                   login=unquote(parts.username or ""), password=unquote(parts.password or ""),
                   schema=unquote(parts.path.lstrip("/")), extra=extra)

    @classmethod
    def from_json(cls, conn_id: str, text: str) -> "Conn":
        data = json.loads(text)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return cls(conn_id=conn_id, conn_type=data.get("conn_type") or "", host=data.get("host") or "",
                   port=data.get("port"), login=data.get("login") or "",
                   password=data.get("password") or "", schema=data.get("schema") or "",
                   extra=extra)

    @classmethod
    def from_object(cls, obj: Any) -> "Conn":
        """An airflow.sdk Connection (or anything with its attributes)."""
        if isinstance(obj, Conn):
            return obj
        extra = getattr(obj, "extra_dejson", None)
        if extra is None:
            raw = getattr(obj, "extra", None) or {}
            extra = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        return cls(conn_id=getattr(obj, "conn_id", "") or "", conn_type=obj.conn_type or "",
                   host=obj.host or "", port=obj.port, login=obj.login or "",
                   password=obj.password or "", schema=obj.schema or "", extra=dict(extra))

    def base_url(self) -> str:
        """The HTTP(S) base URL: `host` if it is a URL, else scheme://host[:port][/path].

        The scheme is `extra.scheme`, else the conn_type when it is http/https (Airflow's http
        connections may also keep it in `schema`), else https."""
        if "://" in self.host:
            url = self.host.rstrip("/")
        else:
            scheme = self.extra.get("scheme") or (
                self.schema if self.schema in ("http", "https") else
                self.conn_type if self.conn_type in ("http", "https") else "https")
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
        return Conn.from_json(conn_id, value) if value.startswith("{") else Conn.from_uri(conn_id, value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{env_name(conn_id)} is not a valid connection URI or JSON "
                         f"({type(exc).__name__})") from None


Resolver = Callable[[str], Any]


def lookup(conn_id: str, resolver: Resolver | None = None) -> Conn | None:
    """A connection from `resolver` (the Airflow layer's lookup) or, failing that, the env."""
    if resolver is not None:
        found = resolver(conn_id)
        if found is not None:
            return Conn.from_object(found)
    return from_env(conn_id)


# --- the alert store -------------------------------------------------------------------------------

_LIBPQ_PARAMS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "options", "connect_timeout",
                 "application_name", "target_session_attrs", "keepalives", "keepalives_idle"}


def is_url(value: str) -> bool:
    return "://" in value


def looks_like_path(value: str) -> bool:
    return ("/" in value or "\\" in value or value.startswith(".")
            or value.endswith((".db", ".sqlite", ".sqlite3")))


def store_url_from_connection(conn: Conn) -> str:
    """A connection as an alert-store URL: PostgreSQL, or SQLite (host or schema is the path)."""
    kind = conn.conn_type.lower()
    if kind in ("postgres", "postgresql"):
        register_secret(conn.password)
        auth = quote(conn.login, safe="") + (":" + quote(conn.password, safe="") if conn.password else "")
        netloc = (auth + "@" if auth else "") + (conn.host or "127.0.0.1") + \
            (f":{conn.port}" if conn.port else "")
        params = {k: v for k, v in conn.extra.items() if k in _LIBPQ_PARAMS}
        return f"postgresql://{netloc}/{quote(conn.schema or 'postgres')}" + \
            (f"?{urlencode(params)}" if params else "")
    if kind == "sqlite":
        return conn.host or conn.schema
    raise UsageError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}: the alert store "
                     f"needs a postgres or sqlite connection")


def resolve_store(value: str, resolver: Resolver | None = None) -> str:
    """DETECTION_ALERT_STORE as a URL or path: a URL or path as is, else a connection id."""
    if is_url(value) or looks_like_path(value):
        return value
    conn = lookup(value, resolver)
    if conn is None:
        raise UsageError(f"DETECTION_ALERT_STORE={value!r} is neither a URL nor a path, and no "
                         f"connection {value!r} is defined (Airflow connection or {env_name(value)})")
    return store_url_from_connection(conn)
