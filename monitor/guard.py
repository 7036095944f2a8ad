"""Which addresses the monitor may connect to: public ones, and the networks a deployment allows. The guard sits where
connections open, so every redirect hop and every DNS answer passes it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """Raised where a connection would open: the host's address is outside what may be fetched."""


def address_kind(address: IPAddress) -> str | None:
    """What makes an address unfit to fetch from (loopback, private, …); None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    kinds = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unique-local", isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, found in kinds if found), None)


class AddressGuard:
    """Which addresses may be fetched from: public ones, and any in the allowed networks (MONITOR_ALLOWED_NETWORKS)."""

    def __init__(self, allowed: Iterable[IPNetwork] = ()):
        self.allowed = tuple(allowed)

    def refusal(self, address: IPAddress) -> str | None:
        """What the address is when it is refused ("a loopback address"); None when it may be fetched from."""
        kind = address_kind(address)
        forms = [address, address.ipv4_mapped] if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else [address]
        if kind is None or any(form in network for form in forms for network in self.allowed if form.version == network.version):
            return None
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses that may be connected to, resolved once; AddressRefused when there are none."""
        try:
            found, literal = [ipaddress.ip_address(host.strip("[]"))], True
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
            literal = False
        refusals = [self.refusal(address) for address in found]
        usable = [address for address, refusal in zip(found, refusals) if refusal is None]
        if not usable:
            named = f"{found[0]} is" if literal else f"{host} resolves to {found[0]},"
            raise AddressRefused(f"{named} {refusals[0]}; set MONITOR_ALLOWED_NETWORKS to allow it")
        return usable


class GuardedBackend(httpcore.SyncBackend):
    """Opens connections only to addresses the guard let through, resolved once and connected to as checked,
    so a DNS answer that changes between the check and the connection (rebinding) reaches nothing refused."""

    def __init__(self, guard: AddressGuard):
        self.guard = guard

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last: Exception | None = None
        for address in self.guard.addresses(host, port):
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last  # type: ignore[misc]


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport over a connection pool whose every connection (each redirect hop too) passes the guard."""

    def __init__(self, guard: AddressGuard, *, limits: httpx.Limits):
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )
