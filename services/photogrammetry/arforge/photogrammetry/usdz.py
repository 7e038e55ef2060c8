"""USDZ export for AR Quick Look, with Pixar's USD (``pxr``, PyPI ``usd-core``).

The stage holds one ``UsdGeomMesh`` (points, face-vertex indices, vertex normals, an ``st``
texture-coordinate primvar) bound to a ``UsdPreviewSurface`` material whose diffuseColor is a
``UsdUVTexture`` reading the PNG through a ``UsdPrimvarReader_float2``. Stage metadata:
``upAxis = Y``, ``metersPerUnit`` as given, a default prim. The package is written by
``UsdUtils.CreateNewARKitUsdzPackage``; the USDZ specification requires an uncompressed zip,
the root layer first and every file's data 64-byte aligned, which :func:`check_usdz_layout`
verifies independently with :mod:`zipfile`.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from arforge.photogrammetry.texture import TexturedMesh


class USDZError(RuntimeError):
    """The package violates the USDZ layout rules or does not re-open."""


def write_usdz(
    tm: TexturedMesh, path: Path | str, meters_per_unit: float = 1.0, name: str = "model"
) -> Path:
    """Write ``tm`` (Y-up model frame) as an AR Quick Look USDZ at ``path``.

    ``meters_per_unit``: size of one model unit in metres (stage metadata). Raises
    :class:`USDZError` if the result fails :func:`check_usdz_layout`.
    """
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

    path = Path(path)
    mesh = tm.mesh
    with tempfile.TemporaryDirectory(prefix="usdz-") as tmp:
        tmpdir = Path(tmp)
        Image.fromarray(tm.texture).save(tmpdir / "texture.png", format="PNG")
        layer_path = tmpdir / f"{name}.usdc"
        stage = Usd.Stage.CreateNew(str(layer_path))
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
        root = UsdGeom.Xform.Define(stage, "/Root")
        stage.SetDefaultPrim(root.GetPrim())

        geom = UsdGeom.Mesh.Define(stage, "/Root/Model")
        pts = mesh.vertices.astype(np.float32)
        geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts))
        geom.CreateFaceVertexCountsAttr(
            Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, np.int32))
        )
        geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(mesh.faces.astype(np.int32).ravel()))
        geom.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(mesh.vertex_normals().astype(np.float32)))
        geom.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        geom.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
        geom.CreateDoubleSidedAttr(False)
        lo, hi = pts.min(0), pts.max(0)
        geom.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
        st = np.stack([tm.uvs[:, 0], 1.0 - tm.uvs[:, 1]], -1).astype(np.float32)
        primvar = UsdGeom.PrimvarsAPI(geom).CreatePrimvar(
            "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
        )
        primvar.Set(Vt.Vec2fArray.FromNumpy(st))

        mat = UsdShade.Material.Define(stage, "/Root/Material")
        surf = UsdShade.Shader.Define(stage, "/Root/Material/Surface")
        surf.CreateIdAttr("UsdPreviewSurface")
        surf.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.9)
        surf.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
        reader = UsdShade.Shader.Define(stage, "/Root/Material/STReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("st")
        tex = UsdShade.Shader.Define(stage, "/Root/Material/BaseColor")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("texture.png")
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
        tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surf.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
            tex.ConnectableAPI(), "rgb"
        )
        mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
        UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(mat)
        stage.GetRootLayer().Save()
        del stage

        out = tmpdir / "out.usdz"
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer_path)), str(out)):
            raise USDZError("pxr could not package the USDZ")
        shutil.move(str(out), path)
    check_usdz_layout(path)
    return path


def check_usdz_layout(path: Path | str) -> list[str]:
    """Verify the USDZ container rules; returns the entry names, first the root layer.

    Checks: every entry ZIP_STORED (no compression, no encryption), the first entry is a
    .usdc/.usda layer, and each entry's data starts at a multiple of 64 bytes. Raises
    :class:`USDZError` naming the first violation.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as zf, path.open("rb") as fh:
        infos = zf.infolist()
        if not infos:
            raise USDZError("empty USDZ package")
        if Path(infos[0].filename).suffix not in (".usdc", ".usda", ".usd"):
            raise USDZError(f"first entry {infos[0].filename!r} is not a USD layer")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise USDZError(f"{info.filename!r} is compressed")
            if info.flag_bits & 0x1:
                raise USDZError(f"{info.filename!r} is encrypted")
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            data_offset = info.header_offset + 30 + name_len + extra_len
            if data_offset % 64:
                raise USDZError(
                    f"{info.filename!r} data at offset {data_offset} is not 64-byte aligned"
                )
        return [i.filename for i in infos]


def open_usdz(path: Path | str) -> dict:
    """Re-open ``path`` with pxr and summarise it: up axis, metersPerUnit, default prim,
    mesh face and point counts, and the texture file names the materials reference."""
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise USDZError(f"pxr cannot open {path}")
    faces = points = 0
    textures = []
    for prim in stage.Traverse():
        if prim.IsA(UsdGeom.Mesh):
            m = UsdGeom.Mesh(prim)
            faces += len(m.GetFaceVertexCountsAttr().Get() or [])
            points += len(m.GetPointsAttr().Get() or [])
        if prim.IsA(UsdShade.Shader):
            sh = UsdShade.Shader(prim)
            if sh.GetIdAttr().Get() == "UsdUVTexture":
                f = sh.GetInput("file").Get()
                textures.append(f.path if f is not None else None)
    return {
        "up_axis": str(UsdGeom.GetStageUpAxis(stage)),
        "meters_per_unit": float(UsdGeom.GetStageMetersPerUnit(stage)),
        "default_prim": str(stage.GetDefaultPrim().GetPath()) if stage.GetDefaultPrim() else None,
        "faces": faces,
        "points": points,
        "textures": textures,
    }
