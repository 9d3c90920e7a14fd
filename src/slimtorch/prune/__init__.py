"""Pruning: channels (structured), weights (unstructured, N:M), layers (depth)."""
