"""The gaze adapter's section of the configuration (``[inputs.gaze]``).

Kept free of heavy imports: the CLI builds every section to print ``--help``.
"""
from __future__ import annotations

from typing import Literal

import msgspec


class GazeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the gaze comes from, how it is filtered, and when a dwell confirms."""

    # --- identity
    name: str = "gaze"  # source name in Focus/Confirm/SourceStatus; the daemon ranks "gaze*" as gaze

    # --- the LSL stream (any non-empty field must match; all empty = the first stream of stream_type)
    stream_name: str = "Tobii"  # LSL stream name; the Tobii Pro LSL connector uses "Tobii"
    stream_type: str = "Eyetracker"  # LSL content type; the Tobii connector uses "Eyetracker"
    source_id: str = ""  # LSL source_id (e.g. the tracker's serial); set it to pick one of several trackers
    resolve_timeout_s: float = 2.0  # how long one resolve attempt waits before reporting the stream missing
    retry_s: float = 2.0  # pause between attempts to find (or re-open) the stream
    lost_after_ms: float = 1000.0  # no samples for this long = stream lost (a live tracker sends NaN, not nothing)
    clock_refresh_s: float = 5.0  # how often the LSL time correction (tracker clock -> bus clock) is measured
    poll_ms: float = 10.0  # how often the inlet is drained

    # --- the channel map
    # preset: "tobii" (lx ly lpupil rx ry rpupil), "binocular" (lx ly rx ry), "mono" (x y), "custom"
    channels: str = "tobii"
    # for "custom": role -> 0-based index or channel label; roles x y | lx ly rx ry, optional lpupil rpupil valid
    channel_map: dict[str, int | str] = msgspec.field(default_factory=dict)
    valid_min: float = 0.5  # a "valid" (confidence) channel below this marks the sample invalid
    units: Literal["norm", "px"] = "norm"  # "norm": 0..1 of the display area; "px": tracker pixels (see tracker_px)
    # screen size the tracker reports pixels in, for units = "px"
    tracker_px: list[float] = msgspec.field(default_factory=lambda: [1920.0, 1080.0])
    y_up: bool = False  # True when the tracker's y grows upwards (Pupil Labs norm_pos); Tobii's grows downwards
    offscreen_margin: float = 0.25  # an eye further than this (normalised) outside the display counts as invalid

    # --- signal processing
    smooth_samples: int = 3  # causal moving average over this many valid samples (1 = off)
    max_gap_ms: float = 75.0  # shorter invalid gaps are bridged (no reset of the smoother or the velocity)
    # physical display size (24" 16:9), for degrees
    screen_mm: list[float] = msgspec.field(default_factory=lambda: [531.0, 299.0])
    distance_mm: float = 650.0  # eye-to-screen distance, for degrees
    velocity_deg_s: float = 30.0  # I-VT: faster than this is a saccade (Tobii Pro's default I-VT threshold)
    velocity_window_ms: float = 20.0  # I-VT speed is measured over at least this span (timestamps jitter at 60 Hz)
    min_fixation_ms: float = 50.0  # a fixation must last this long before it moves focus to another box

    # --- hit testing (the renderer's Layout, screen pixels)
    renderer: str = ""  # use layouts from this renderer only ("" = the fork's latest layout from any renderer)
    # a fixation this close outside a box still hits it; the focused box keeps focus within it
    fuzzy_radius_px: float = 40.0

    # --- dwell
    dwell_ms: int = 600  # fixation time on one candidate that confirms it (0 = never confirm by dwell; focus only)
    cascade: bool = False  # cascading dwell: likely words confirm sooner (uses the fork's candidate probabilities)
    cascade_min_ms: int = 300  # with cascade, dwell = dwell_ms - (dwell_ms - cascade_min_ms) * prob
    fresh_fixation: bool = True  # at a new fork, only fixations that start after it opened count towards dwell
    blink_hold_ms: float = 300.0  # gaze lost (blink, look-away) shorter than this pauses the dwell; longer drops focus
    confirm_index: bool = False  # name the candidate in dwell Confirms (default: confirm the focus, rule "dwell")
    progress_hz: float = 10.0  # Focus messages with dwell progress per second while dwelling
    refresh_ms: float = 500.0  # re-send the held focus this often, so that it never goes stale at the daemon

    # --- rest (protocol 1.4): looking off the screen pauses; a dwell on the page's Resume target resumes
    rest_ms: float = 3000.0  # no valid gaze inside the screen this long while a fork waits = pause (0 = never)

    # --- calibration
    user: str = ""  # whose calibration to load ("" = $USER)
    calibration_dir: str = ""  # where calibrations are stored ("" = $XDG_DATA_HOME/razvilka/gaze)
    apply_calibration: bool = True  # correct gaze by the measured offset of the nearest regions
    default_spread_px: float = 40.0  # gaze spread assumed without a calibration (about 1 degree at 65 cm)
    calibration_grid: int = 3  # the routine shows grid x grid targets
    calibration_target_ms: float = 1500.0  # how long each target is shown
    calibration_settle_ms: float = 500.0  # samples in the first part of each target are ignored (the eye moves there)
