"""The record schema, as the leaderboard reads it: defined in :mod:`filterbench.harness.record_schema` (the
harness writes records; the leaderboard only reads them), re-exported here for existing imports."""

from filterbench.harness.record_schema import (  # noqa: F401
    RECORD_VERSION,
    GitInfo,
    Keys,
    OracleCounts,
    PluginRef,
    RecipeRef,
    Record,
    RecordError,
    SelectionStats,
    StageCompute,
    TasklistRef,
    record_digest,
    validate_record,
    validation_reason,
)
