"""Resource limits shared by every reader."""

MAX_PIXELS = 100_000_000
"""Largest image (rows x columns) any reader accepts; more is refused as a likely decompression bomb."""
