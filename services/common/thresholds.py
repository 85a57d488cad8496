"""Thresholds that more than one service must agree on, each named once with its reason."""

from __future__ import annotations

# Pixels, the short side of a face box in the original frame. Below ~20 px neither RetinaFace's
# landmarks nor an ArcFace embedding identify anyone: the detector drops smaller faces
# (RetinaFaceSettings.min_face_px) and the tracker never asks to embed them
# (StrongSortSettings.min_appearance_side).
MIN_FACE_PX = 20.0
