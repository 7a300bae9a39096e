"""Errors a user can act on.

A :class:`UserError` is printed by the command line as one paragraph (no traceback): it
names the bad input, says what was expected, and says how to fix it.
"""

import click


class UserError(click.ClickException):
    """A problem with the user's input or environment, with the fix in its message."""

    exit_code = 2


class TrainingDiverged(UserError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""

    exit_code = 3
