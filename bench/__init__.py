"""Benchmarks with their baselines; results go to bench/results/."""
