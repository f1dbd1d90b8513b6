"""Faces over time: the IoU tracker, face lifecycle and device state, the publish policy."""
