"""The one exception type that means "the user gave bad input".

The CLI turns it into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Expected bad input: a wrong path, an unknown name, a bad config value."""
