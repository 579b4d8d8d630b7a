"""Errors that name the problem for the operations team."""


class BackupError(Exception):
    """A backup, verification, retention or restore step failed."""


class ConfigurationError(BackupError):
    """A connection, variable or tool is missing or wrong."""


class IntegrityError(BackupError):
    """Stored bytes do not match what their manifest says."""
