"""Errors the CLI turns into one-line messages (no traceback)."""


class CgdbenchError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(CgdbenchError, ValueError):
    """A bad option value; the message names the value and the allowed ones."""


class IncompatibleError(ConfigError):
    """Options that are each valid but do not go together (a compressor outside the algorithm's contract, an
    option another algorithm reads, a problem it does not run on): what a grid's skip_incompatible leaves out."""


class DataError(CgdbenchError):
    """A dataset that cannot be found, read or verified."""


class StoreError(CgdbenchError):
    """The HDF5 results file cannot be written (missing directory, locked, ...)."""


def choices_error(what: str, value, allowed) -> ConfigError:
    allowed = ", ".join(str(a) for a in allowed)
    return ConfigError(f"unknown {what} {value!r}; choose one of: {allowed}")
