"""Tobii (or any LSL) gaze: fixations, dwell and focus."""
