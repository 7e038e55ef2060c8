"""What a keyframe pass learned about damaged or cut-short video data, in words for users.

The probe only demuxes (the sample table and packet sizes), so a file whose frame data is
garbage past some point probes fine; only decoding finds it. The keyframe pass counts
packets the decoder rejects and frames it outputs with concealed errors, and
:func:`assess` compares the frames decoded with the frames the container lists to say
where the damage starts. :func:`warnings_for` words it for the job result and
:func:`too_few_frames` ends a job whose input no longer has enough frames.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

from arforge.shared.errors import JobFailed

__all__ = ["DecodeDamage", "assess", "too_few_frames", "warnings_for"]


@dataclass(frozen=True)
class DecodeDamage:
    """Damage found while decoding.

    ``decode_errors``: packets the decoder rejected (invalid data). ``corrupt_frames``:
    frames output with concealed errors (skipped, not used). ``missing_frames``: frames
    the container lists that never came out of the decoder. ``first_frame`` (1-based,
    display order) and ``first_s`` (seconds from the first frame): the first frame
    missing or corrupt, None when there is none. ``stopped``: no intact frame came after
    it. ``expected_frames`` / ``duration_s``: what the container lists.
    """

    expected_frames: int
    duration_s: float
    decode_errors: int
    corrupt_frames: int
    missing_frames: int
    first_frame: int | None
    first_s: float | None
    stopped: bool

    @property
    def damaged(self) -> bool:
        """The decoder reported bad data (rejected packets or concealed frames)."""
        return self.decode_errors > 0 or self.corrupt_frames > 0


def assess(
    listed_pts: Sequence[int],
    time_base: Fraction,
    duration_s: float,
    expected_frames: int,
    decoded_pts: Collection[int],
    corrupt_pts: Collection[int],
    decode_errors: int,
) -> DecodeDamage:
    """Compare the decoded frames with the listed ones.

    ``listed_pts``: sorted presentation timestamps the probe demuxed (``time_base``
    units); ``decoded_pts`` / ``corrupt_pts``: timestamps of intact / concealed frames
    out of the decoder. ``expected_frames``: frames the container lists (at least
    ``len(listed_pts)``; more when the file is cut short).
    """
    decoded = set(decoded_pts)
    corrupt = set(corrupt_pts)
    missing = {p for p in listed_pts if p not in decoded and p not in corrupt}
    bad = sorted(missing | corrupt)
    first_frame = first_s = None
    stopped = False
    if bad and listed_pts:
        first = bad[0]
        first_frame = bisect.bisect_left(listed_pts, first) + 1
        first_s = round(float((first - listed_pts[0]) * time_base), 6)
        stopped = not any(p > first for p in decoded)
    return DecodeDamage(
        expected_frames=max(expected_frames, len(listed_pts)),
        duration_s=duration_s,
        decode_errors=decode_errors,
        corrupt_frames=len(corrupt),
        missing_frames=len(missing),
        first_frame=first_frame,
        first_s=first_s,
        stopped=stopped,
    )


def _where(d: DecodeDamage) -> str:
    return (
        f"frame {d.first_frame} of {d.expected_frames} ({d.first_s:.2f} s of {d.duration_s:.2f} s)"
    )


def warnings_for(d: DecodeDamage, decoded: int, truncated: bool) -> list[str]:
    """Sentences for the job result's ``warnings`` (empty for an intact file).

    ``decoded``: intact frames the pass decoded; ``truncated``: reading stopped early
    because the file ends (or breaks) before the frames it lists.
    """
    out: list[str] = []
    if d.damaged and d.first_frame is not None:
        lost = d.missing_frames + d.corrupt_frames
        if d.stopped:
            out.append(
                f"the video is damaged: decoding stopped at {_where(d)} because the data "
                f"there is invalid; only the {decoded} frames before it were decoded and "
                "the model uses those"
            )
        else:
            out.append(
                f"the video is damaged: {lost} of {d.expected_frames} frames could not be "
                f"decoded because the data is invalid, the first at {_where(d)}; they were "
                f"skipped and the model uses the other {decoded}"
            )
    elif d.damaged:
        out.append(
            f"the video is damaged: the decoder rejected {d.decode_errors} packet(s) of "
            f"invalid data; {decoded} of {d.expected_frames} frames were decoded"
        )
    if truncated:
        out.append(
            f"the video is truncated (upload incomplete?): only {decoded} of "
            f"{d.expected_frames} frames decoded before the break; the model uses those"
        )
    return out


def too_few_frames(
    d: DecodeDamage, usable: int, min_frames: int, truncated: bool, file: str
) -> JobFailed:
    """``corrupt_container``: damage or a cut left ``usable`` frames, under ``min_frames``."""
    reason = "damaged" if d.damaged else "truncated"
    if d.damaged and d.first_frame is not None:
        what = f"The video is damaged: decoding failed at {_where(d)} because the data is invalid"
    elif d.damaged:
        what = f"The video is damaged: the decoder rejected {d.decode_errors} packet(s)"
    else:
        what = "The video is truncated (upload incomplete?)"
    return JobFailed(
        "corrupt_container",
        f"{what}; only {usable} of {d.expected_frames} frames could be read and at least "
        f"{min_frames} are needed. Upload the original file again.",
        {
            "file": file,
            "reason": reason,
            "truncated": truncated,
            "decoded": usable,
            "expected_frames": d.expected_frames,
            "duration_s": round(d.duration_s, 3),
            "decode_errors": d.decode_errors,
            "corrupt_frames": d.corrupt_frames,
            "missing_frames": d.missing_frames,
            "damaged_at_frame": d.first_frame,
            "damaged_at_s": d.first_s,
            "min_frames": min_frames,
        },
    )
