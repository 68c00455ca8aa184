"""TLS over an anyio byte stream that delivers its alerts.

anyio's ``TLSStream.wrap`` raises as soon as the handshake fails, leaving the TLS alert that
says *why* unsent. With TLS 1.3 the server checks a client certificate only after the
client's side of the handshake is complete, so without that alert a refused client sees a
bare EOF instead of "certificate required" / "unknown CA". This stream does the same
memory-BIO dance as anyio, but always flushes what OpenSSL queued, including the alert,
before raising: both sides can then say which certificate was refused.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
from anyio.abc import ByteStream

__all__ = ["TlsStream", "tls_handshake"]

T = TypeVar("T")


class TlsStream(ByteStream):
    def __init__(
        self,
        transport: ByteStream,
        ssl_object: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self._transport = transport
        self._ssl = ssl_object
        self._in = incoming
        self._out = outgoing
        # The reader and the writer both send (a read can produce TLS records to answer).
        # The writer holds the lock from ``SSLObject.write`` until the transport took every
        # byte queued meanwhile, the reader's included; the reader never waits for it (see
        # _flush).
        self._send_lock = anyio.Lock()
        self._torn = False  # a send was cut short: the peer got part of a record

    async def _flush(self) -> None:
        """Send what OpenSSL queued, unless a send is under way: that one sends it too.

        The reader must never wait for the writer. A writer blocked in ``transport.send``
        waits for the peer to read; if this side's reader waited for the lock behind it, it
        would stop reading, and a peer doing the same (or one that stops reading while its
        own answers are not taken, as the server does) never reads again either: every call
        on the connection hangs. Waiting is only possible for the reader's own records
        (handshake, alerts), and then only while the kernel's send buffer is full.
        """
        if not self._out.pending:
            return
        try:
            self._send_lock.acquire_nowait()
        except anyio.WouldBlock:
            return  # the holder sends what is pending before it lets go of the lock
        try:
            await self._send_pending()
        finally:
            self._send_lock.release()

    async def _send_pending(self) -> None:
        """Hand everything OpenSSL queued to the transport (call holding the send lock)."""
        if self._torn:
            raise anyio.BrokenResourceError("an earlier TLS send was cut short")
        out = self._out
        while out.pending:
            data = out.read()
            try:
                await self._transport.send(data)
            except BaseException:
                # Part of a record may have gone out (a cancelled send, say): nothing sent
                # after it could be decrypted by the peer.
                self._torn = True
                raise

    async def _call(self, fn: Callable[[], T]) -> T:
        while True:
            try:
                result = fn()
            except ssl.SSLWantReadError:
                await self._flush()
                try:
                    data = await self._transport.receive()
                except anyio.EndOfStream:
                    self._in.write_eof()
                else:
                    self._in.write(data)
            except ssl.SSLWantWriteError:  # pragma: no cover - memory BIOs grow instead
                await self._flush()
            except ssl.SSLError:
                # Send the alert that explains the failure to the peer, then raise.
                try:
                    with anyio.move_on_after(1):
                        await self._flush()
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                raise
            else:
                await self._flush()
                return result

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._call(lambda: self._ssl.read(max_bytes))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # The framing above detects a connection cut inside a frame by itself.
            raise anyio.EndOfStream from None
        except ssl.SSLError as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        async with self._send_lock:
            # Encrypted while holding the lock, so that the records leave in the order
            # OpenSSL numbered them, and a reader never finds them pending (see _flush).
            try:
                self._ssl.write(item)
            except ssl.SSLError as exc:
                raise anyio.BrokenResourceError from exc
            await self._send_pending()

    async def send_eof(self) -> None:
        raise NotImplementedError("half-closing a TLS connection is not supported")

    async def aclose(self) -> None:
        await self._transport.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._transport.extra_attributes


async def tls_handshake(
    transport: ByteStream,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    hostname: str | None = None,
) -> TlsStream:
    """Wrap ``transport`` and complete the handshake; raises ``ssl.SSLError`` (after sending
    the alert to the peer) or the transport's errors."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ssl_object = context.wrap_bio(
        incoming, outgoing, server_side=server_side, server_hostname=hostname
    )
    stream = TlsStream(transport, ssl_object, incoming, outgoing)
    await stream._call(ssl_object.do_handshake)
    return stream
