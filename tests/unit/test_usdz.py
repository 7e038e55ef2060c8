"""USDZ export: container layout (stored, 64-byte aligned, root layer first) and a pxr
re-open with Y-up, metersPerUnit, a mesh and a UsdUVTexture."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from pg_scenes import textured_blob

from arforge.photogrammetry import usdz


@pytest.fixture(scope="module")
def usdz_path(tmp_path_factory):
    _, tm = textured_blob()
    return usdz.write_usdz(tm, tmp_path_factory.mktemp("usdz") / "model.usdz", meters_per_unit=0.01)


def test_usdz_layout(usdz_path) -> None:
    names = usdz.check_usdz_layout(usdz_path)
    assert names[0].endswith(".usdc")
    assert any(n.endswith(".png") for n in names)
    with zipfile.ZipFile(usdz_path) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_usdz_reopens_with_pxr(usdz_path) -> None:
    from pxr import Usd, UsdGeom

    _, tm = textured_blob()
    info = usdz.open_usdz(usdz_path)
    assert info["up_axis"] == "Y"
    assert info["meters_per_unit"] == pytest.approx(0.01)
    assert info["default_prim"] == "/Root"
    assert info["faces"] == len(tm.mesh.faces)
    assert info["points"] == len(tm.mesh.vertices)
    assert len(info["textures"]) == 1 and info["textures"][0].endswith(".png")
    stage = Usd.Stage.Open(str(usdz_path))
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Root/Model"))
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get()
    assert len(st) == len(tm.mesh.vertices)
    # USD's st origin is bottom-left: st.y == 1 - v
    assert np.allclose(np.asarray(st)[:, 1], 1 - tm.uvs[:, 1], atol=1e-6)
    assert len(mesh.GetNormalsAttr().Get()) == len(tm.mesh.vertices)


def test_layout_check_rejects_compressed_and_misordered(tmp_path) -> None:
    bad = tmp_path / "bad.usdz"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.usda", "#usda 1.0\n" * 50)
    with pytest.raises(usdz.USDZError, match="compressed"):
        usdz.check_usdz_layout(bad)
    order = tmp_path / "order.usdz"
    with zipfile.ZipFile(order, "w") as zf:
        zf.writestr("texture.png", b"x")
        zf.writestr("model.usda", "#usda 1.0\n")
    with pytest.raises(usdz.USDZError, match="not a USD layer"):
        usdz.check_usdz_layout(order)
    unaligned = tmp_path / "unaligned.usdz"
    with zipfile.ZipFile(unaligned, "w") as zf:
        zf.writestr("m.usda", "#usda 1.0\n")
    with pytest.raises(usdz.USDZError, match="aligned"):
        usdz.check_usdz_layout(unaligned)
