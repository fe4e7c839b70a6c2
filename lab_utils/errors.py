"""Exceptions raised by lab_utils.

Messages are in French because students read them; each says what went wrong,
with the expected and the given value, and what to do.
"""


class LabError(Exception):
    """Base class of every error lab_utils raises on purpose."""


class ConfigError(LabError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class DownloadError(LabError, OSError):
    """A file could not be downloaded or verified (the message gives the manual steps)."""


class ChecksumError(DownloadError):
    """A file's content does not match its published checksum."""


class DataError(LabError, ValueError):
    """The SMS data file does not have the expected format."""


class WeightsError(LabError, ValueError):
    """A checkpoint is missing a tensor, has an extra one, or a tensor of the wrong shape."""


class AdapterError(LabError, ValueError):
    """A LoRA adapter file is unreadable or does not match the model it is loaded onto."""


class InputError(LabError, ValueError):
    """A text given to the classifier is empty or not a string."""
