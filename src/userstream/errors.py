"""Errors that the CLI reports as one clear line instead of a stack trace."""


class UserstreamError(Exception):
    """A failure with a message that says what failed, with what input, and what to do."""


class PrerequisiteError(UserstreamError):
    """Something the machine must provide (Java 17, Maven, a free port, disk) is missing."""
