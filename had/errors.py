"""The one exception type for problems a user can fix (bad paths, options, inputs)."""


class HadError(Exception):
    """Raised with a message naming the file, line or option at fault.

    The CLI prints the message and exits with status 1, without a traceback.
    """
