"""fer-edge deeplens package (filled by its issue)."""
