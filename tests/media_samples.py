"""Tiny real media files generated on the fly for upload / sniffing tests.

Every sample is made with the real encoders (PyAV/FFmpeg, Pillow, trimesh), a few KiB each.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np


def encode_video(
    path: Path,
    codec: str = "libx264",
    *,
    fmt: str | None = None,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    tag: str | None = None,
    faststart: bool = False,
) -> Path:
    """Encode a moving-bar clip at 24 fps with PyAV (moov at the end unless ``faststart``)."""
    import av

    w, h = size
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=opts) as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if tag:
            s.codec_tag = tag
        if codec == "libx265":
            s.options = {"x265-params": "log-level=error"}
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, : (i * 5) % w + 1] = (200, 80, 30)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def encode_aac_only(path: Path) -> Path:
    """An .mp4 with a single AAC audio stream (no video)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=22050)
        s.layout = "mono"
        for i in range(12):
            fr = av.AudioFrame.from_ndarray(
                (np.sin(np.arange(1024) / 9.0) * 0.2).astype(np.float32)[None, :],
                format="fltp",
                layout="mono",
            )
            fr.sample_rate = 22050
            fr.pts = i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def truncate_in_mdat(src: Path, dst: Path) -> Path:
    """Cut ``src`` (moov at the end) in the middle of its ``mdat`` box."""
    data = src.read_bytes()
    i = data.find(b"mdat") - 4
    n = int.from_bytes(data[i : i + 4], "big")
    assert data.find(b"moov") > i, "sample must have moov after mdat"
    dst.write_bytes(data[: i + n // 2])
    return dst


def patch_codec(src: Path, dst: Path) -> Path:
    """Rename the video codec in the container (mp4 sample entry ``avc1`` or the Matroska
    CodecID) to one FFmpeg has no decoder for; sizes stay the same so the file is valid."""
    data = src.read_bytes()
    if data[4:8] == b"ftyp":
        j = data.find(b"avc1", data.find(b"moov"))
        data = data[:j] + b"zzz1" + data[j + 4 :]
    else:
        j = data.find(b"V_MPEG4/ISO/AVC")
        data = data[:j] + b"V_XXXXX/ISO/AVC" + data[j + 15 :]
    assert j > 0
    dst.write_bytes(data)
    return dst


def image_bytes(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    """A small gradient image encoded by Pillow (``JPEG``, ``PNG`` or ``WEBP``)."""
    from PIL import Image

    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def zip_bytes(entries: dict[str, bytes], *, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    comp = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", comp) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def glb_bytes() -> bytes:
    """A unit box exported as GLB by trimesh."""
    import trimesh

    data = trimesh.creation.box(extents=(1, 1, 1)).export(file_type="glb")
    assert isinstance(data, bytes) and data[:4] == b"glTF"
    return data


def ply_bytes(n: int = 3) -> bytes:
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode()
    return header + b"".join(struct.pack("<3f", i, i, i) for i in range(n))


def abort_now(path: Path) -> None:
    """A stand-in for a decoder that crashes the process (used in a child process)."""
    import os

    os.abort()


def sleep_forever(path: Path) -> None:
    """A stand-in for a probe that never finishes (used in a child process)."""
    import time

    time.sleep(3600)
