"""HDR (PQ / HLG, BT.2020) to SDR (sRGB, BT.709) tone mapping for keyframes.

Phones record HDR video (iPhone: HLG; others: PQ / HDR10). Decoded naively those frames
look grey and washed out, which starves feature matching of contrast. Steps, per pixel:

1. signal to linear light: PQ EOTF (SMPTE ST 2084 / ITU-R BT.2100) in cd/m^2, or the HLG
   inverse OETF plus the BT.2100 OOTF (system gamma 1.2 at a 1000 cd/m^2 display);
2. BT.2020 to BT.709 primaries (ITU-R BT.2087 matrix), negatives clipped;
3. scale so HDR reference white (203 cd/m^2, ITU-R BT.2408) becomes SDR white 1.0;
4. compress luminance above a knee at 0.8 with a C1-continuous rational shoulder
   ``k + (1-k) x / (x + 1 - k)`` (the Reinhard et al. 2002 operator shifted to the knee),
   scaling RGB by the luminance ratio to keep hue;
5. the sRGB OETF (IEC 61966-2-1) to 8 bit.
"""

from __future__ import annotations

import numpy as np

REFERENCE_WHITE_NITS = 203.0
KNEE = 0.8

# BT.2020 -> BT.709 linear RGB (ITU-R BT.2087-0, equation 4 inverse).
_BT2020_TO_BT709 = np.array(
    [
        [1.6605, -0.5876, -0.0728],
        [-0.1246, 1.1329, -0.0083],
        [-0.0182, -0.1006, 1.1187],
    ],
    dtype=np.float32,
)
_LUMA_709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
_LUMA_2020 = np.array([0.2627, 0.6780, 0.0593], dtype=np.float32)


def pq_eotf(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: non-linear signal 0..1 -> luminance in cd/m^2 (0..10000)."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    e = np.power(np.clip(signal, 0.0, 1.0), 1.0 / m2)
    y = np.power(np.maximum(e - c1, 0.0) / (c2 - c3 * e), 1.0 / m1)
    return (10000.0 * y).astype(np.float32)


def pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pq_eotf`: cd/m^2 -> PQ signal 0..1 (used to build test inputs)."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(np.clip(np.asarray(nits, dtype=np.float64) / 10000.0, 0.0, 1.0), m1)
    return np.power((c1 + c2 * y) / (1.0 + c3 * y), m2)


def hlg_to_display_nits(signal: np.ndarray, peak_nits: float = 1000.0) -> np.ndarray:
    """ARIB STD-B67 / BT.2100 HLG: signal RGB 0..1 -> display-linear RGB in cd/m^2."""
    a = 0.17883277
    b = 1.0 - 4.0 * a
    c = 0.5 - a * np.log(4.0 * a)
    e = np.clip(signal, 0.0, 1.0).astype(np.float32)
    scene = np.where(e <= 0.5, e * e / 3.0, (np.exp((e - c) / a) + b) / 12.0)
    gamma = 1.2
    ys = np.maximum(scene @ _LUMA_2020, 1e-6)[..., None]
    return (peak_nits * np.power(ys, gamma - 1.0) * scene).astype(np.float32)


def srgb_oetf(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding of linear 0..1 values."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def tonemap_to_sdr(rgb: np.ndarray, transfer: str, *, bt2020: bool = True) -> np.ndarray:
    """Map an HDR frame to 8-bit sRGB.

    ``rgb``: H x W x 3 non-linear RGB, uint16 (0..65535, e.g. swscale ``rgb48le``) or
    float in 0..1; ``transfer``: ``"pq"`` or ``"hlg"``; ``bt2020``: whether the
    primaries are BT.2020 (else assumed BT.709). Returns H x W x 3 uint8.
    """
    sig = rgb.astype(np.float32) / 65535.0 if rgb.dtype == np.uint16 else rgb.astype(np.float32)
    if transfer == "pq":
        nits = pq_eotf(sig)
    elif transfer == "hlg":
        nits = hlg_to_display_nits(sig)
    else:
        raise ValueError(f"unknown HDR transfer {transfer!r}")
    lin = nits / REFERENCE_WHITE_NITS
    if bt2020:
        lin = np.maximum(lin @ _BT2020_TO_BT709.T, 0.0)
    lum = lin @ _LUMA_709
    over = lum > KNEE
    x = np.maximum(lum - KNEE, 0.0)
    mapped = np.where(over, KNEE + (1.0 - KNEE) * x / (x + 1.0 - KNEE), lum)
    ratio = np.where(lum > 1e-6, mapped / np.maximum(lum, 1e-6), 1.0)
    sdr = lin * ratio[..., None]
    return np.round(srgb_oetf(sdr) * 255.0).astype(np.uint8)
