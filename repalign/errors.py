"""The error hierarchy: every error a user can cause, with the message they see."""


class RepalignError(Exception):
    """Base class of every error caused by the user's input or options.

    The message is shown to the user as is (the CLI prints ``Error: <message>``
    and exits with code 2), so it must name the file, the key and what is wrong.
    """


class InputError(RepalignError):
    """A file cannot be read, or its contents cannot be used."""


class UsageError(RepalignError):
    """Options that are invalid or contradict each other."""


class ClusterError(RepalignError):
    """A Dask cluster cannot be reached, lost, or its workers cannot run the work (--workers, --scheduler)."""
