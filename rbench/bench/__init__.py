"""Measuring backends: numerical parity against the PyTorch reference (and, later, latency and throughput)."""
