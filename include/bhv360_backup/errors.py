"""Errors that name the problem for the operations team."""


class BackupError(Exception):
    """A backup, verification, retention or restore step failed."""


class ConfigurationError(BackupError):
    """A connection, variable or tool is missing or wrong."""


class IntegrityError(BackupError):
    """Stored bytes do not match what their manifest says."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message (or its type when it has none), for alerts and logs."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""
