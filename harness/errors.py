"""Error types.  Every message names the file, uid, shard or plugin at fault, on one line.

The CLI prints ``error: <message>`` and exits with status 2 for these; anything else is a bug and shows its
traceback.
"""


class FilterbenchError(Exception):
    """Base class: a user-facing error with a one-line message."""


class PluginError(FilterbenchError):
    """A plugin failed to load, is unknown, is registered twice, or produced invalid output."""


class ParamsError(FilterbenchError):
    """A plugin was given parameters it does not accept."""


class PoolError(FilterbenchError):
    """A pool file is missing, truncated, misaligned or malformed."""


class SubsetError(FilterbenchError):
    """A DataComp subset file is malformed (wrong dtype, unsorted, unreadable)."""


class InvariantError(FilterbenchError):
    """A sampler's output violates the invariants of its mode."""


class StoreError(FilterbenchError):
    """An artifact is missing, ambiguous, incomplete or corrupted."""


class RecipeError(FilterbenchError):
    """A recipe file is malformed or names unknown plugins or scales."""
