"""Benchmarks that put the service beside the raw interpreter in one run (``make bench``)."""
