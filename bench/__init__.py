"""fnhost benchmark: the host against a raw-pipe floor and its peers, in one run.

Run ``python -m bench`` from the repository root (``--quick`` for a smoke
run). It is a benchmark, not a test: it reports, it never fails on a number.
"""
