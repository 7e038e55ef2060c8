"""User metadata rules shared by the storage backends.

Object metadata is a small ``dict[str, str]`` (e.g. ``{"filename": "café 🎥.mp4"}``).
Names are restricted to lower-case ASCII so they survive S3, which sends them as
``x-amz-meta-<name>`` HTTP headers and lower-cases them. Values are any Unicode text;
the S3 backend encodes values that are not plain printable ASCII with RFC 2047
(``=?UTF-8?B?<base64>?=``, the form S3 itself documents for non-ASCII metadata) and
decodes them again on ``head``, so both backends round-trip the same strings.
"""

from __future__ import annotations

import base64
import binascii
import re

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_ENCODED = re.compile(r"^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$", re.IGNORECASE)
_PLAIN = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")

# S3 allows 2 KiB of user metadata per object (names + values, as sent).
MAX_METADATA_BYTES = 2048


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Validate metadata names/values and return a plain copy.

    Raises ``ValueError`` for a name outside ``[a-z0-9-]`` (max 64 chars), a non-string
    value, or when the encoded form would exceed S3's 2 KiB limit.
    """
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"invalid metadata name {name!r}: use lower-case a-z, 0-9 and '-'")
        if not isinstance(value, str):
            raise ValueError(f"metadata value for {name!r} must be a string")
        out[name] = value
    size = sum(len(k) + len(encode_value(v)) for k, v in out.items())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata too large: {size} bytes encoded, limit {MAX_METADATA_BYTES}")
    return out


def encode_value(value: str) -> str:
    """ASCII header-safe form of ``value``: unchanged when it is printable ASCII without
    leading/trailing spaces and not itself encoded-looking, else RFC 2047 base64."""
    if value == "" or (_PLAIN.match(value) and not _ENCODED.match(value)):
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def decode_value(value: str) -> str:
    """Inverse of :func:`encode_value`; values that are not RFC 2047 come back unchanged."""
    m = _ENCODED.match(value)
    if not m:
        return value
    try:
        return base64.b64decode(m.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return value
