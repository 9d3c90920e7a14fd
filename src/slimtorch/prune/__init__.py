"""Pruning: channels (structured), weights (unstructured, N:M, rows), layers (depth)."""
