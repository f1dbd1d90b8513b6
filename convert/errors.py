"""The one error type of the converters (Python 3.6 compatible: the TensorRT builder uses it)."""


class ConversionError(ValueError):
    """A conversion that cannot be done or did not verify; the message says what and why.

    A ValueError so that the ``fer-edge`` CLI reports it as a clean error (exit status 2).
    """


class ParityError(ConversionError):
    """A converted artifact whose outputs differ from the SavedModel's beyond the tolerance."""
