"""fer-edge jetson package (filled by its issue)."""
