"""Triton Inference Server model repository for faceflow's models (see docs/triton.md)."""
