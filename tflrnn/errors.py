"""Errors a user can act on. The CLI prints their message as one line and exits 2; anything else is a bug."""


class TflrnnError(Exception):
    """Bad input: the message says what is wrong and, where it can, what would be right."""

    exit_code = 2


class ConfigError(TflrnnError):
    """A cell option or config file that tflrnn cannot turn into a model."""


class WeightsError(TflrnnError):
    """Missing, unreadable or inconsistent weights."""


class ModelFormatError(TflrnnError):
    """A file that is not a readable TFLite model, or not one tflrnn can verify."""
