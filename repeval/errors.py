"""Errors a user can act on.

A :class:`UserError` names the bad input, says what was expected and how to fix it, in one
paragraph. The command line prints it without a traceback and exits 2 (it is a
``click.ClickException``); in Python it is a :class:`ValueError`, so ``repeval.probe``,
``repeval.evaluate`` and ``repeval.Probe`` raise the same text as the shell prints, and
``except ValueError`` catches it.
"""

import click


class UserError(click.ClickException, ValueError):
    """A problem with the user's input or environment, with the fix in its message."""

    exit_code = 2

    def __str__(self) -> str:
        return self.message


class TrainingDiverged(UserError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""

    exit_code = 3
