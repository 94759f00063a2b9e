"""The one base class of errors a user can act on, and how a script reports them.

Every such error carries a one-line message naming the file, key, index or batch and
what to do. The scripts catch ``USER_ERRORS``, log that line and exit with status 2,
without a traceback. Errors raised inside a ``DataLoader`` worker come back to the main
process with the worker's traceback folded into their message; ``user_message`` keeps
only the original one line.
"""
import logging

USER_ERROR_EXIT_STATUS = 2


class UserError(Exception):
    """A problem the user can fix (a config key, a data file, a checkpoint, a diverged
    run); the message says which and how, in one line."""


# ``FileNotFoundError`` covers missing files named on the command line.
USER_ERRORS = (UserError, FileNotFoundError)


def user_message(err: BaseException) -> str:
    """The one-line message of ``err``; for an error re-raised from a DataLoader worker
    ("Caught X in DataLoader worker process N. Original Traceback ... X: message") the
    original message without the traceback."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
        for candidate in (prefix, f"{type(err).__qualname__}: "):
            if last.startswith(candidate):
                last = last[len(candidate):]
                break
        return last
    return text


def report_user_error(logger: logging.Logger, err: BaseException) -> int:
    """Log ``err`` as one line and return the exit status of a user error (2)."""
    logger.error("error: %s", user_message(err))
    return USER_ERROR_EXIT_STATUS
