"""GLB export: loads with trimesh and pygltflib with faces, normals, UVs and an embedded
texture; valid under the Khronos glTF validator when node and gltf-validator are present."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
from pg_scenes import textured_blob

from arforge.photogrammetry import gltf


@pytest.fixture(scope="module")
def glb_path(tmp_path_factory):
    _, tm = textured_blob()
    return gltf.write_glb(tm, tmp_path_factory.mktemp("glb") / "model.glb")


def test_glb_header_and_chunks(glb_path) -> None:
    data = glb_path.read_bytes()
    magic, version, length = struct.unpack("<III", data[:12])
    assert magic == 0x46546C67 and version == 2 and length == len(data)
    jlen, jtype = struct.unpack("<II", data[12:20])
    assert jtype == 0x4E4F534A and jlen % 4 == 0
    doc = json.loads(data[20 : 20 + jlen])
    assert doc["asset"]["version"] == "2.0"
    prim = doc["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"}
    assert doc["images"][0]["mimeType"] == "image/png"


def test_glb_loads_in_trimesh_with_texture(glb_path) -> None:
    import trimesh

    _, tm = textured_blob()
    scene = trimesh.load(glb_path)
    (geom,) = scene.geometry.values()
    assert len(geom.faces) == len(tm.mesh.faces)
    assert geom.visual.uv.shape == (len(tm.mesh.vertices), 2)
    img = geom.visual.material.baseColorTexture
    assert img.size == (tm.texture.shape[1], tm.texture.shape[0])
    assert np.allclose(np.linalg.norm(geom.vertex_normals, axis=1), 1, atol=1e-3)


def test_glb_loads_in_pygltflib(glb_path) -> None:
    import pygltflib

    g = pygltflib.GLTF2().load(str(glb_path))
    acc = g.accessors
    _, tm = textured_blob()
    assert acc[0].count == len(tm.mesh.vertices)
    assert acc[3].count == 3 * len(tm.mesh.faces)
    assert np.allclose(acc[0].min, tm.mesh.vertices.min(0), atol=1e-5)
    assert g.materials[0].pbrMetallicRoughness.baseColorTexture.index == 0
    assert g.images[0].bufferView == 4


def test_glb_rejects_an_empty_mesh() -> None:
    from arforge.photogrammetry.meshing import Mesh
    from arforge.photogrammetry.texture import TexturedMesh

    empty = TexturedMesh(
        Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64)),
        np.zeros((0, 2)),
        np.zeros((4, 4, 3), np.uint8),
        0.0,
    )
    with pytest.raises(ValueError):
        gltf.glb_bytes(empty)


def _validator_env() -> dict[str, str] | None:
    """Environment in which ``require('gltf-validator')`` resolves (NODE_PATH may point at an
    ``npm install gltf-validator`` folder's node_modules), or None."""
    if not shutil.which("node"):
        return None
    env = dict(os.environ)
    ok = subprocess.run(
        ["node", "-e", "require.resolve('gltf-validator')"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    return env if ok.returncode == 0 else None


def test_glb_passes_the_khronos_validator(glb_path) -> None:
    env = _validator_env()
    if env is None:
        pytest.skip(
            "node with the npm package gltf-validator is not available "
            "(npm install gltf-validator; set NODE_PATH to its node_modules)"
        )
    script = (
        "const v=require('gltf-validator');const fs=require('fs');"
        "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])))"
        ".then(r=>console.log(JSON.stringify(r.issues)))"
        ".catch(e=>{console.error(e);process.exit(2)});"
    )
    out = subprocess.run(
        ["node", "-e", script, str(glb_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    issues = json.loads(out.stdout)
    assert issues["numErrors"] == 0, issues["messages"][:10]
    assert issues["numWarnings"] == 0, issues["messages"][:10]
