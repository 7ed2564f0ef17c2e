"""A PDF's Flate streams measured before PDFium inflates them: a 2 MB file can hold a content stream
that inflates to 2 GB (PDFium then takes 3 GB of memory to render its page), so a stream or a
document that inflates past the limits is refused instead.

Streams are found by their ``stream`` keyword, not through the cross-reference table (a broken
table must not hide one). Each is inflated a bounded piece at a time and never kept: through
ASCIIHex / ASCII85 text first where its dictionary names them, and through up to three nested
zlib streams (``/Filter [/FlateDecode /FlateDecode]``), each counted at its own size. Deflate is
read raw, without its checksum (PDFium reads past a bad one). Every byte of the file is inflated
about once: a file whose "streams" overlap (a scan that would cost time quadratic in its size)
is refused. Not measured: LZW and RunLength streams, inline images inside content streams, and
encrypted streams (their bytes cannot be inflated without the key).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

from .errors import PayloadTooLarge, UnprocessableDocument

# The keyword, not the end of "endstream" nor part of a name; PDFium skips to the end of its line.
_STREAM = re.compile(rb"(?<![A-Za-z])stream(?![A-Za-z])[^\r\n]{0,256}(?:\r\n|\n|\r)")
_DICT_BEFORE = 2048  # bytes before the keyword searched for the stream's text filters
_HEX = re.compile(rb"/ASCIIHexDecode|/AHx\b")
_A85 = re.compile(rb"/ASCII85Decode|/A85\b")
_IN_STEP = 1 << 14  # input fed at a time: deflate inflates at most ~1,032x, so 16 MiB out at most
_OUT_STEP = 1 << 22  # output asked of zlib at a time
_MAX_DEPTH = 3  # a zlib stream inside a zlib stream inside one
_WHITESPACE = b" \t\r\n\x00\x0c"


def _zlib_header(head: bytes) -> bool:
    """RFC 1950: deflate, a check that holds, and no preset dictionary (PDF has none)."""
    return (
        len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0 and not head[1] & 0x20
    )


class _Inflater:
    """One zlib stream, inflated a bounded piece at a time; ``size`` counts what came out."""

    def __init__(self) -> None:
        self._raw = zlib.decompressobj(-15)
        self._head = b""
        self.size = 0
        self.taken = 0  # input bytes this stream used
        self.done = False  # ended, broken, or no zlib stream at all

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            return []
        if len(self._head) < 2:
            need = 2 - len(self._head)
            self._head, data = self._head + data[:need], data[need:]
            self.taken += min(need, len(self._head))
            if len(self._head) < 2:
                return []
            if not _zlib_header(self._head):
                self.done = True
                return []
        pieces = []
        try:
            while data and not self._raw.eof:
                piece = self._raw.decompress(data, _OUT_STEP)
                self.taken += len(data) - len(self._raw.unconsumed_tail)
                data = self._raw.unconsumed_tail
                if piece:
                    pieces.append(piece)
                    self.size += len(piece)
        except zlib.error:
            self.done = True  # cut short or broken: what came out counts
        if self._raw.eof:
            self.taken -= len(self._raw.unused_data)
            self.done = True
        return pieces


def inflated_size(data: bytes | bytearray | memoryview, start: int, cap: int) -> tuple[int, int]:
    """(bytes, input used) of the zlib stream at ``data[start:]``: the largest count of any of its
    nested layers, counted up to just past ``cap``; (0, 2) when no zlib stream starts there."""
    view, layers = memoryview(data), [_Inflater()]

    def push(depth: int, chunk: bytes | memoryview) -> bool:
        """Feed ``chunk`` to layer ``depth`` and what comes out on down; False once over ``cap``."""
        layer = layers[depth]
        for piece in layer.feed(bytes(chunk)):
            if len(layers) == depth + 1 < _MAX_DEPTH and layer.size == len(piece) and _zlib_header(piece):
                layers.append(_Inflater())  # its output opens with a zlib stream: count that too
            if layer.size > cap:
                return False
            if depth + 1 < len(layers):
                for offset in range(0, len(piece), _IN_STEP):
                    if not push(depth + 1, piece[offset : offset + _IN_STEP]):
                        return False
        return True

    for offset in range(start, len(view), _IN_STEP):
        if layers[0].done or not push(0, view[offset : offset + _IN_STEP]):
            break
    return max(layer.size for layer in layers), layers[0].taken


def _text_decoded(data: bytes, start: int, filters: bytes) -> tuple[bytes | None, int]:
    """A stream's bytes through its ASCIIHex or ASCII85 filter (up to its end-of-data mark), and
    the input they took; None where the dictionary names neither or the text is not theirs."""
    for pattern, end_mark in ((_HEX, b">"), (_A85, b"~>")):
        if pattern.search(filters):
            end = data.find(end_mark, start)
            end = len(data) if end < 0 else end
            text = data[start:end]
            try:
                if end_mark == b">":
                    digits = bytes(c for c in text if c not in _WHITESPACE)
                    return binascii.unhexlify(digits + b"0" * (len(digits) % 2)), end - start
                return base64.a85decode(text, ignorechars=_WHITESPACE), end - start
            except (ValueError, binascii.Error):
                return None, end - start
    return None, 0


def check_streams(data: bytes, max_stream_bytes: int, max_total_bytes: int) -> None:
    """``PayloadTooLarge`` when one stream or all of them together inflate past their limit;
    ``UnprocessableDocument`` when the file's streams overlap (a file made to cost the scan)."""
    total, taken, budget = 0, 0, 2 * len(data) + (1 << 20)
    for match in _STREAM.finditer(data):
        start = match.end()
        before = data[max(0, match.start() - _DICT_BEFORE) : match.start()]
        decoded, used = _text_decoded(data, start, before[before.rfind(b"obj") + 1 :])  # its own dict
        source, at = (decoded, 0) if decoded is not None else (data, start)
        size, used_inflating = inflated_size(source, at, max_stream_bytes)
        taken += used + used_inflating
        if taken > budget:
            raise UnprocessableDocument(
                "the PDF's streams overlap (each one runs on past the next): not a PDF that can be read"
            )
        if size > max_stream_bytes:
            raise PayloadTooLarge(
                f"a stream of the PDF at byte {start} inflates to over {max_stream_bytes} bytes, the limit "
                "(limits.max_pdf_stream_bytes): a decompression bomb, or a page too large to read"
            )
        total += size
        if total > max_total_bytes:
            raise PayloadTooLarge(
                f"the PDF's streams inflate to over {max_total_bytes} bytes, the limit "
                "(limits.max_pdf_inflated_bytes)"
            )
