"""Benchmarks: codec rate-distortion on Kodak, JPEG/WebP baselines, metrics, BD-rate."""
