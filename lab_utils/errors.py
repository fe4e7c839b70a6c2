"""Exceptions raised by lab_utils.

Messages are in French because students read them; each says what went wrong,
with the expected and the given value, and what to do.

In Jupyter, a LabError shows as its French message alone: IPython asks an exception
for ``_render_traceback_()`` before formatting its stack frames, and a LabError answers
with one line. The kernel still reports an error (the cell fails, nbgrader sees it), and
nothing goes to stderr. Other exceptions keep IPython's full traceback.
``TP3_TRACEBACK=1`` shows the frames of lab errors too (for whoever debugs lab_utils).
"""

import os
import traceback

ENV_TRACEBACK = "TP3_TRACEBACK"


class LabError(Exception):
    """Base class of every error lab_utils raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        """IPython's rendering hook: the lines shown for this error in a notebook."""
        if os.environ.get(ENV_TRACEBACK, "").strip() not in ("", "0"):
            return "".join(traceback.format_exception(type(self), self, self.__traceback__)).splitlines()
        return [f"\x1b[1;31mErreur\x1b[0m : {self}"]


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


class RunError(LabError):
    """A run folder is missing, incomplete, or its files do not belong together."""


class SubmissionError(LabError):
    """The submission archive cannot be made (identifier, notebooks or run folder)."""
