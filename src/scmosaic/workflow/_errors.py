"""The two ways a workflow run can be refused: bad options and bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class OptionsError(ValueError):
    """An option out of range or a combination of options that does not work.

    Raised before any file is read or any data are touched; the message names the option
    and what it accepts. The command line reports it as a usage error (exit code 2).
    """


class InputError(ValueError):
    """Bad input: a missing or unreadable file, an unknown modality or key, invalid data.

    The command line reports it as ``scmosaic: error: <message>`` and exits with code 3.
    """


@contextlib.contextmanager
def as_input_error(context: str) -> Iterator[None]:
    """Re-raise scmosaic's validation errors inside a step as :class:`InputError`.

    Parameters
    ----------
    context
        What the step was doing, put in front of the message (e.g. ``"preprocessing"``).
    """
    try:
        yield
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, NotImplementedError) as err:
        # str() of a KeyError quotes its message; its first argument reads better
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise InputError(f"{context}: {message}") from err
