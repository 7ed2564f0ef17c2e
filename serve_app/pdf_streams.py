"""A PDF's Flate streams measured before PDFium inflates them: a 2 MB file can hold a content stream
that inflates to 2 GB (PDFium then takes 3 GB of memory to render its page), so a stream or a
document that inflates past the limits is refused instead. Streams are found by their ``stream``
keyword, not through the cross-reference table (a broken table must not hide one); a Flate stream
inside a Flate stream (``/Filter [/FlateDecode /FlateDecode]``) is measured at its inner size.
Not measured: LZW streams (a legacy filter) and encrypted streams (their bytes cannot be inflated
without the key).
"""

from __future__ import annotations

import re
import zlib

from .errors import PayloadTooLarge

_STREAM = re.compile(rb"(?<!end)stream(?:\r\n|\n|\r)")
_IN_STEP = 1 << 16  # input fed at a time (zlib copies what is left past a stream's end)
_OUT_STEP = 1 << 22  # output asked of zlib at a time: a bomb never lands in memory whole
_MAX_DEPTH = 3  # a zlib stream inside a zlib stream inside one


def _zlib_header(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def inflated_size(data: bytes | bytearray, start: int, cap: int, depth: int = 1) -> int:
    """Bytes the zlib stream at ``data[start:]`` inflates to, counted up to just past ``cap``; 0 when
    none starts there. Output that is itself a zlib stream (at most ``cap`` bytes, or it was refused
    already) is kept and measured in turn."""
    view, inflater = memoryview(data), zlib.decompressobj()
    size, nested = 0, None
    try:
        for offset in range(start, len(view), _IN_STEP):
            chunk: bytes | memoryview = view[offset : offset + _IN_STEP]
            while chunk and size <= cap and not inflater.eof:
                out = inflater.decompress(chunk, _OUT_STEP)
                chunk = inflater.unconsumed_tail
                if size == 0 and depth < _MAX_DEPTH and _zlib_header(out):
                    nested = bytearray()
                if nested is not None:
                    nested += out
                size += len(out)
            if size > cap or inflater.eof:
                break
    except zlib.error:
        pass  # not zlib (JPEG, raw, encrypted) or cut short: what came out counts
    if nested and size <= cap:
        return max(size, inflated_size(nested, 0, cap, depth + 1))
    return size


def check_streams(data: bytes, max_stream_bytes: int, max_total_bytes: int) -> None:
    """``PayloadTooLarge`` when one stream or all of them together inflate past their limit."""
    total = 0
    for match in _STREAM.finditer(data):
        size = inflated_size(data, match.end(), max_stream_bytes)
        if size > max_stream_bytes:
            raise PayloadTooLarge(
                f"a stream of the PDF at byte {match.end()} inflates to over {max_stream_bytes} bytes, "
                "the limit (limits.max_pdf_stream_bytes): a decompression bomb, or a page too large to read"
            )
        total += size
        if total > max_total_bytes:
            raise PayloadTooLarge(
                f"the PDF's streams inflate to over {max_total_bytes} bytes, the limit "
                "(limits.max_pdf_inflated_bytes)"
            )
