"""Whether a WebSocket handshake may proceed, judged by its ``Host`` and ``Origin`` headers.

One job, no I/O: :class:`HandshakePolicy` is built once from ``Server(allowed_origins=...,
allowed_hosts=...)`` and answers, for each upgrade request, ``None`` (go on) or a :class:`Refusal`
(the server answers HTTP 403 before the upgrade).

The rules, in order:

1. ``allowed_hosts`` (off unless configured): the ``Host`` header must match an entry. This is what
   stops DNS rebinding, where a page on ``http://evil.example:8080`` that resolves to the server's
   address sends ``Host: evil.example:8080`` together with the matching ``Origin``.
2. No ``Origin`` header: allowed (not a browser; a browser always sends one on a WebSocket).
3. ``allowed_origins``: ``"*"`` allows every origin, otherwise an origin listed there is allowed.
4. Same origin: the ``Origin``'s scheme must be the request's (``http://`` for a ``ws``/``http``
   request, ``https://`` for ``wss``/``https``) and its host and port those of the ``Host`` header.

The request's scheme comes from the ASGI scope. Behind a proxy that terminates TLS the scope says
``ws`` unless the ASGI server trusts the proxy's ``X-Forwarded-Proto`` (uvicorn's ``proxy_headers``
with ``forwarded_allow_ips``); otherwise same-origin pages on ``https://`` are refused, and the public
origin must be listed in ``allowed_origins``. The ``Host`` header is what the proxy forwards: it must
pass the client's own (nginx: ``proxy_set_header Host $host``) for both checks to see the public name.

Nothing here raises on a client's header, however malformed: a header that does not parse is simply
not allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from typed_ss.errors import ConfigurationError

__all__ = ["HandshakePolicy", "Refusal"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
"""The port a URL or ``Host`` header means when it names none."""

_ORIGIN_SCHEME_OF_REQUEST: Final = {"ws": "http", "http": "http", "wss": "https", "https": "https"}
"""The ``Origin`` scheme a same-origin page has, by the request's scheme in the ASGI scope."""

_HOST_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_IPV6_CHARACTERS: Final = frozenset("0123456789abcdef:.")
_SCHEME_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")


class Refusal(NamedTuple):
    """Why a handshake was refused: the header at fault, its value as received, and the rule."""

    header: str
    """``"host"`` or ``"origin"``."""
    value: str | None
    """The header's value (client-controlled: log it with ``%r``), ``None`` when it was missing."""
    reason: str
    """Which rule refused it, for the log; contains no client data."""


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int | None


class _HostPattern(NamedTuple):
    host: str
    """The host, or for ``*.example.com`` the suffix ``.example.com``."""
    port: int | None
    """``None``: any port."""
    subdomains: bool


class HandshakePolicy:
    """The ``Origin`` and ``Host`` rules of one server (see the module docstring).

    Args:
        allowed_origins: origins allowed besides the server's own, as a browser sends them
            (``"https://app.example.com"``, ``"http://localhost:5173"``; compared without case, a
            default port may be written or not); ``"*"`` allows every origin, ``"null"`` the origin
            of sandboxed frames and ``file:`` pages.
        allowed_hosts: ``None`` (no check), or the hosts the ``Host`` header may name:
            ``"chat.example.com"`` (any port), ``"127.0.0.1:8080"`` (that port only),
            ``"[::1]:8080"``, ``"*.example.com"`` (every subdomain, not ``example.com`` itself), or
            ``"*"`` (any host).

    Raises:
        ConfigurationError: a single string instead of a list, an empty ``allowed_hosts``, or an
            entry that is not an origin (resp. a host) of the forms above.
    """

    __slots__ = ("_any_host", "_any_origin", "_exact_hosts", "_host_suffixes", "_origins")

    def __init__(
        self, allowed_origins: Iterable[str] = (), allowed_hosts: Iterable[str] | None = None
    ) -> None:
        if isinstance(allowed_origins, str):
            raise ConfigurationError("allowed_origins must be a list of origins, not a single string")
        origins = list(allowed_origins)
        self._any_origin = "*" in origins
        self._origins: frozenset[_Origin | str] = frozenset(
            _configured_origin(origin) for origin in origins if origin != "*"
        )
        self._any_host = True
        self._exact_hosts: frozenset[tuple[str, int | None]] = frozenset()
        self._host_suffixes: tuple[tuple[str, int | None], ...] = ()
        if allowed_hosts is None:
            return
        if isinstance(allowed_hosts, str):
            raise ConfigurationError("allowed_hosts must be a list of hosts, not a single string")
        hosts = list(allowed_hosts)
        if not hosts:
            raise ConfigurationError(
                "allowed_hosts is empty, so every connection would be refused; "
                "list the hosts clients connect to, or pass None for no Host check"
            )
        if "*" in hosts:
            return
        patterns = [_configured_host(host) for host in hosts]
        self._any_host = False
        self._exact_hosts = frozenset((p.host, p.port) for p in patterns if not p.subdomains)
        self._host_suffixes = tuple((p.host, p.port) for p in patterns if p.subdomains)

    def refusal(self, scheme: str, host: str | None, origin: str | None) -> Refusal | None:
        """``None`` if a handshake with these headers may proceed, else why not.

        Args:
            scheme: the request's scheme from the ASGI scope (``ws``, ``wss``; ``http``/``https``
                are understood too).
            host: the ``Host`` header, ``None`` when missing.
            origin: the ``Origin`` header, ``None`` when missing.
        """
        default_port = DEFAULT_PORTS.get(scheme)
        if not self._any_host and not self._host_allowed(host, default_port):
            return Refusal("host", host, "not in allowed_hosts")
        if origin is None or self._any_origin:
            return None
        parsed = _parse_origin(origin)
        if parsed is None:
            return Refusal("origin", origin, "not a valid origin")
        if parsed in self._origins:
            return None
        if isinstance(parsed, str):
            return Refusal("origin", origin, "not in allowed_origins")
        if parsed.scheme != _ORIGIN_SCHEME_OF_REQUEST.get(scheme):
            # An https page talking to a plain ws endpoint (or the reverse) is not the same origin.
            return Refusal("origin", origin, "its scheme is not the request's, and not in allowed_origins")
        own = _parse_host(host, default_port) if host is not None else None
        if own is None or (parsed.host, parsed.port) != own:
            return Refusal("origin", origin, "not the server's own origin (Host), and not in allowed_origins")
        return None

    def _host_allowed(self, host: str | None, default_port: int | None) -> bool:
        parsed = _parse_host(host, default_port) if host is not None else None
        if parsed is None:
            return False
        name, port = parsed
        exact = self._exact_hosts
        if (name, port) in exact or (name, None) in exact:
            return True
        return any(
            name.endswith(suffix) and (allowed_port is None or allowed_port == port)
            for suffix, allowed_port in self._host_suffixes
        )


# --- parsing: never raises on a client's header ---------------------------------------------------


def _parse_origin(origin: str) -> _Origin | str | None:
    """An ``Origin`` header as ``(scheme, host, port)`` with the default port filled in, ``"null"``
    as itself, or ``None`` when it is not an origin (browsers send no path, query or user info)."""
    origin = origin.lower()
    if origin == "null":
        return origin
    scheme, sep, authority = origin.partition("://")
    if not sep or not scheme or not scheme[0].isalpha() or not _SCHEME_CHARACTERS.issuperset(scheme):
        return None
    parsed = _parse_host(authority, DEFAULT_PORTS.get(scheme))
    if parsed is None:
        return None
    return _Origin(scheme, *parsed)


def _parse_host(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``host[:port]`` (a ``Host`` header, or an origin's authority) as a lower-case host without a
    trailing dot and the port, the default one if none is written; ``None`` if it does not parse."""
    value = value.lower()
    if value.startswith("["):  # an IPv6 literal: [::1]:8080
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        if end < 0 or not _IPV6_CHARACTERS.issuperset(host[1:-1]) or ":" not in host:
            return None
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if sep else None
        if host.endswith("."):  # "example.com." names the same host as "example.com"
            host = host[:-1]
        if not host or not _HOST_CHARACTERS.issuperset(host) or ".." in host or host[0] in ".-":
            return None
    if port_text is None:
        return host, default_port
    port = _parse_port(port_text)
    return None if port is None else (host, port)


def _parse_port(text: str) -> int | None:
    # isdigit alone accepts "²" and other non-ASCII digits; int() accepts "+80", " 80" and "8_0".
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


# --- parsing the configuration: raises ConfigurationError ------------------------------------------


def _configured_origin(entry: object) -> _Origin | str:
    if not isinstance(entry, str):
        raise ConfigurationError(f"allowed_origins entries must be strings, not {type(entry).__qualname__}")
    text = entry.strip()
    if text.endswith("/") and text.count("/") == 3:  # "https://app.example.com/": a URL of the origin
        text = text[:-1]
    if "*" in text:
        raise ConfigurationError(
            f"allowed_origins entry {entry!r}: wildcards are not supported in origins; list each origin, "
            'or use ["*"] to allow every origin'
        )
    parsed = _parse_origin(text)
    if parsed is None:
        raise ConfigurationError(
            f"allowed_origins entry {entry!r} is not an origin: write it as a browser sends it, "
            '"scheme://host" or "scheme://host:port" ("https://app.example.com"), without a path'
        )
    return parsed


def _configured_host(entry: object) -> _HostPattern:
    if not isinstance(entry, str):
        raise ConfigurationError(f"allowed_hosts entries must be strings, not {type(entry).__qualname__}")
    text = entry.strip().lower()
    if "://" in text:
        raise ConfigurationError(
            f"allowed_hosts entry {entry!r} is a URL: give the host as the Host header names it "
            '("chat.example.com" or "chat.example.com:8443"); origins go in allowed_origins'
        )
    subdomains = text.startswith("*.")
    if subdomains:
        text = text[2:]
    if "*" in text:
        raise ConfigurationError(
            f"allowed_hosts entry {entry!r}: a wildcard may only start an entry, as in '*.example.com'"
        )
    # No default port: an entry without a port allows every port.
    parsed = _parse_host(text, None)
    if parsed is None or (subdomains and text.startswith("[")):
        raise ConfigurationError(
            f"allowed_hosts entry {entry!r} is not a host: expected 'host', 'host:port', '[ipv6]:port' "
            "or '*.domain'"
        )
    host, port = parsed
    return _HostPattern("." + host if subdomains else host, port, subdomains)
