"""Exceptions that mean 'bad input': the CLI turns them into one line on stderr and exit code 2."""


class InputError(ValueError):
    """Bad user input: a ticker, a file, a date, an option or a config value."""


class DataValidationError(InputError):
    """A price series that cannot be trusted; the message names ticker, file and date."""
