"""Seeing what the agent sees: annotated frames and the live view in a browser."""
