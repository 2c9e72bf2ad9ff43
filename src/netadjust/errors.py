"""The one exception type that means "the user asked for something impossible"."""


class UserError(Exception):
    """Bad input. The CLI prints its message on one line and exits with status 2.

    The message names the problem and the fix, e.g.
    ``"unknown space 'resnet21'; choose one of: plain20, resnet20, ..."``.
    """
