"""Measurement: parameters, MACs, size on disk, receptive field and CPU latency."""
