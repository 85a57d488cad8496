"""faceflow benchmarks: microservices vs the same pipeline in one process vs a naive sequential loop.

Run with `python -m bench.run [--quick]` (or `make bench` / `make bench-quick`); see docs/performance.md.
"""
