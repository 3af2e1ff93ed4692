"""The one exception type the command line turns into a single line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a path, a value, a study file. Never a bug in the toolkit."""
