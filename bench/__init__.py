"""Benchmarks: speed and memory are measured and reported here, never asserted in tests."""
