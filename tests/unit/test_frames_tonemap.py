"""HDR transfer functions against values fixed by the standards (BT.2100, BT.2408)."""

from __future__ import annotations

import numpy as np
import pytest

from arforge.photogrammetry.tonemap import (
    hlg_to_display_nits,
    pq_eotf,
    pq_inverse_eotf,
    tonemap_to_sdr,
)


def test_pq_round_trip_and_anchor_points() -> None:
    nits = np.array([0.0, 0.1, 100.0, 203.0, 1000.0, 10000.0])
    assert pq_eotf(pq_inverse_eotf(nits)) == pytest.approx(nits, rel=1e-4, abs=1e-4)
    # ST 2084: 100 cd/m^2 is code 0.508, 1000 cd/m^2 is 0.752, 10000 is 1.0
    assert pq_inverse_eotf(np.array([100.0, 1000.0, 10000.0])) == pytest.approx(
        [0.5081, 0.7518, 1.0], abs=1e-3
    )


def test_hlg_reference_white_is_203_nits() -> None:
    """BT.2408: HLG reference white (75% signal) on a 1000 cd/m^2 display is 203 cd/m^2."""
    nits = hlg_to_display_nits(np.full((1, 1, 3), 0.75))
    assert float(nits[0, 0, 0]) == pytest.approx(203.0, rel=0.01)


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_reference_white_maps_to_bright_sdr_and_order_is_kept(transfer: str) -> None:
    if transfer == "pq":
        levels = pq_inverse_eotf(np.array([5.0, 50.0, 203.0, 1000.0, 4000.0]))
    else:
        levels = np.array([0.2, 0.45, 0.75, 0.9, 1.0])
    rgb = np.repeat(levels[None, :, None], 3, axis=2)
    sdr = tonemap_to_sdr(rgb, transfer)[0, :, 0].astype(int)
    assert list(sdr) == sorted(sdr) and len(set(sdr)) == len(sdr)  # monotonic, no clipping
    assert 225 <= sdr[2] <= 245  # reference white lands just under the knee's shoulder
    assert sdr[-1] >= 248


def test_unknown_transfer_is_refused() -> None:
    with pytest.raises(ValueError):
        tonemap_to_sdr(np.zeros((1, 1, 3)), "slog3")
