"""Words for socket and TLS failures, so a ConnectionLost says what actually happened."""

from __future__ import annotations

import ssl

__all__ = ["PLAINTEXT_TO_TLS", "REFUSED_AFTER_HANDSHAKE", "describe_io_error"]

# With TLS 1.3 a server checks the client's certificate after the handshake has completed on
# the client's side, and Python servers then close without an alert the client could read:
# all the client sees is a fresh connection closed before the server's first byte.
REFUSED_AFTER_HANDSHAKE = (
    "; the server closed the TLS connection before its first byte, which is how a server that "
    "requires a client certificate refuses one it does not trust (or none): check "
    "REQUESTPLANE_HTTP_TLS_CLIENT_CERT_FILE / REQUESTPLANE_HTTP_TLS_CLIENT_KEY_FILE"
)

# A TLS server closes a connection whose first bytes are not a TLS handshake without a byte
# of its own, so a plaintext client sees nothing but the close. (A server that died or
# dropped the request would look the same over HTTP/1.1, hence "may".)
PLAINTEXT_TO_TLS = (
    " before sending a byte; the server may be speaking TLS: if so, call its https:// address"
)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_io_error(exc: BaseException, origin: str, *, connecting: bool = False) -> str:
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (
            f"TLS: the server certificate of {origin} is not trusted "
            f"({tls.verify_message or tls.reason}); set REQUESTPLANE_HTTP_TLS_CA_FILE to the CA "
            "that signed it"
        )
    if tls is not None:
        reason = tls.reason or str(tls)
        hint = ""
        if reason and any(
            word in reason.upper()
            for word in ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE", "HANDSHAKE")
        ):
            hint = (
                "; the server wants a client certificate it trusts "
                "(REQUESTPLANE_HTTP_TLS_CLIENT_CERT_FILE / _KEY_FILE)"
            )
        return f"TLS with {origin} failed: {reason}{hint}"
    detail = str(exc) or type(exc).__name__
    if connecting:
        return f"cannot connect to {origin}: {detail}"
    return f"the connection to {origin} broke: {detail}"
