"""The one exception type the command line turns into a single line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a path, a value, a study file. Never a bug in the toolkit."""


class Stopped(Exception):
    """A deliberate stop short of the end (the time limit): one line and exit code 0; what was done is kept
    and the same command again continues from there."""
