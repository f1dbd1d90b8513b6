"""fer-edge convert package (filled by its issue)."""
