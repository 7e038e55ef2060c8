"""Binary glTF 2.0 (GLB) export of a textured mesh.

Layout follows the Khronos glTF 2.0 specification: a 12-byte header, a JSON chunk padded with
spaces and a BIN chunk padded with zeros, both to 4 bytes. One mesh with POSITION (with the
required min/max), NORMAL, TEXCOORD_0 and uint32 indices; one metallic-roughness PBR material
whose baseColorTexture is the embedded image (PNG or JPEG). glTF is Y-up, metres, and its UV
origin is the image's top-left corner, which matches :mod:`texture`'s convention.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from arforge.photogrammetry.texture import TexturedMesh

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT = 5126
_UINT32 = 5125


def encode_image(texture: np.ndarray, fmt: str = "png", quality: int = 90) -> tuple[bytes, str]:
    """Encode an RGB uint8 image; returns (bytes, MIME type). ``fmt``: "png" or "jpeg"."""
    buf = io.BytesIO()
    img = Image.fromarray(texture)
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), "image/jpeg"
    if fmt != "png":
        raise ValueError(f"unsupported texture format {fmt!r} (png or jpeg)")
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue(), "image/png"


def _pad(b: bytes, fill: bytes = b"\x00") -> bytes:
    return b + fill * (-len(b) % 4)


def glb_bytes(tm: TexturedMesh, image_format: str = "png", name: str = "model") -> bytes:
    """Serialise ``tm`` (model frame: Y-up, units as given) to GLB bytes."""
    mesh = tm.mesh
    pos = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    nrm = np.ascontiguousarray(mesh.vertex_normals(), dtype=np.float32)
    uv = np.ascontiguousarray(tm.uvs, dtype=np.float32)
    idx = np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel()
    if len(pos) == 0 or len(idx) == 0:
        raise ValueError("cannot export an empty mesh")
    img, mime = encode_image(tm.texture, image_format)

    blobs = [pos.tobytes(), nrm.tobytes(), uv.tobytes(), idx.tobytes(), img]
    views, offset, binary = [], 0, b""
    for i, blob in enumerate(blobs):
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(blob)}
        if i < 3:
            view["target"] = _ARRAY_BUFFER
        elif i == 3:
            view["target"] = _ELEMENT_ARRAY_BUFFER
        views.append(view)
        binary += _pad(blob)
        offset = len(binary)
    n = len(pos)
    doc = {
        "asset": {"version": "2.0", "generator": "ARForge photogrammetry"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {
                        "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
                        "indices": 3,
                        "material": 0,
                        "mode": 4,
                    }
                ],
            }
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": _FLOAT,
                "count": n,
                "type": "VEC3",
                "min": pos.min(0).tolist(),
                "max": pos.max(0).tolist(),
            },
            {"bufferView": 1, "componentType": _FLOAT, "count": n, "type": "VEC3"},
            {"bufferView": 2, "componentType": _FLOAT, "count": n, "type": "VEC2"},
            {"bufferView": 3, "componentType": _UINT32, "count": int(idx.size), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
        "materials": [
            {
                "name": f"{name}_material",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.9,
                },
                "doubleSided": False,
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": 4, "mimeType": mime}],
    }
    js = _pad(json.dumps(doc, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", 0x46546C67, 2, total),
            struct.pack("<II", len(js), 0x4E4F534A),
            js,
            struct.pack("<II", len(binary), 0x004E4942),
            binary,
        ]
    )


def write_glb(tm: TexturedMesh, path: Path | str, image_format: str = "png") -> Path:
    """Write ``tm`` as a GLB file at ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(glb_bytes(tm, image_format))
    return path
