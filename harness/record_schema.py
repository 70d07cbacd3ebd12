"""The run record: one JSON ID card per finished run, the only input the leaderboard reads.

A record links every artifact key of its run (pool, scores, selection, train, eval), says which recipe,
plugins, task list and aggregation produced its numbers, and carries those numbers.  Its ``digest`` is the
SHA-256 of the canonical JSON of everything else in the file, so an edit made after the run (a "better"
number typed in by hand) is caught: :func:`validate_record` rejects it as ``digest mismatch``.  The digest is
an integrity check, not a signature: whoever can rerun :func:`filterbench.harness.recording.make_record` can
forge one, which is why records enter the repository through review (a PR adding one file).

Bump :data:`RECORD_VERSION` on any change to the fields below; old records then fail validation loudly instead
of being read with a wrong meaning.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.hashing import canonical_json
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

RECORD_VERSION = 1

# keys are content keys (16 hex chars in the store; longer ones are accepted for other stores)
_KEY = r"^[0-9a-f]{8,64}$"
# scales name a folder under records/, so they stay plain identifiers
_SCALE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# free text from a submitter (recipe names): anything printable on one line; escaping is the builder's job
_ONE_LINE = r"^[^\x00-\x1f\x7f]+$"


class RecordError(FilterbenchError):
    """A record file is unreadable, malformed, tampered with, or conflicts with another record."""


class _Strict(BaseModel):
    # unknown fields are errors: a misspelt field must not silently vanish from the board
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecipeRef(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=_ONE_LINE)  # recipe name (baselines/<name>.yaml)
    version: int = Field(ge=0)  # the recipe's `version:`, bumped when its output changes
    key: str | None = None  # content key of the resolved recipe, when the runner computes one


class Keys(_Strict):
    pool: str = Field(pattern=_KEY)  # pool artifact
    scores: list[str]  # score artifacts, in the recipe's scorer order (empty for no-scorer recipes)
    selection: str = Field(pattern=_KEY)  # sample artifact
    train: str = Field(pattern=_KEY)  # train artifact
    eval: str = Field(pattern=_KEY)  # eval artifact; names the record file

    @field_validator("scores")
    @classmethod
    def _score_keys(cls, keys: list[str]) -> list[str]:
        bad = [k for k in keys if not re.fullmatch(_KEY, k)]
        if bad:
            raise ValueError(f"not artifact keys: {bad}")
        return keys


class PluginRef(_Strict):
    name: str = Field(min_length=1, pattern=_ONE_LINE)  # registered scorer/sampler name
    version: int = Field(ge=0)  # the plugin class's `version`
    kind: Literal["scorer", "sampler"]
    distribution: str | None = None  # the Python distribution that provided it (None: not installed as one)
    distribution_version: str | None = None  # that distribution's version


class TasklistRef(_Strict):
    name: str = Field(min_length=1)  # task list name, e.g. datacomp_v1
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # hex SHA-256 of the task list file


class SelectionStats(_Strict):
    mode: Literal["subset", "multiset", "schedule"]  # the sampler's mode
    pool_size: int = Field(ge=0)  # uids in the pool
    unique_uids: int = Field(ge=0)  # uids with a count > 0 (over all segments for a schedule)
    total: int = Field(ge=0)  # sum of counts (samples in the training stream before any resampling)
    max_count: int = Field(ge=0)  # the largest number of repeats of one uid

    @model_validator(mode="after")
    def _consistent(self) -> SelectionStats:
        if self.unique_uids > self.pool_size:
            raise ValueError(f"unique_uids {self.unique_uids} exceeds pool_size {self.pool_size}")
        if self.unique_uids > self.total:
            raise ValueError(f"unique_uids {self.unique_uids} exceeds total {self.total}")
        return self


class StageCompute(_Strict):
    wall_s: float = Field(ge=0)  # wall-clock seconds
    cpu_s: float | None = Field(default=None, ge=0)  # CPU seconds (process and children)
    gpu_s: float | None = Field(default=None, ge=0)  # wall seconds using a GPU (DataComp's compute unit)
    peak_rss_mb: float | None = Field(default=None, ge=0)  # peak resident memory


class OracleCounts(_Strict):
    total: int = Field(ge=0)  # pool uids of this noise type (nano's oracle/*.parquet)
    kept: int = Field(ge=0)  # of those, uids the selection kept (count > 0)

    @model_validator(mode="after")
    def _kept_le_total(self) -> OracleCounts:
        if self.kept > self.total:
            raise ValueError(f"kept {self.kept} exceeds total {self.total}")
        return self


class GitInfo(_Strict):
    commit: str | None  # harness checkout commit (None outside a checkout)
    dirty: bool | None  # whether tracked files had local changes


class Record(_Strict):
    record_version: Literal[1]  # RECORD_VERSION when the record was written
    recipe: RecipeRef
    scale: str = Field(pattern=_SCALE)  # scale name (harness/scales.py)
    official: bool  # False when any fixed knob was overridden; such runs are listed separately
    overrides: dict[str, Any] = Field(default_factory=dict)  # the overridden fixed knobs and their values
    seed: int  # run seed; records of one recipe and scale are aggregated over seeds
    keys: Keys
    plugins: list[PluginRef]  # every scorer and the sampler of the recipe
    tasklist: TasklistRef
    aggregation_version: int = Field(ge=0)  # the evaluation's AGGREGATION_VERSION
    metrics: dict[str, float | None]  # task key -> main metric (None: evaluated without a main metric)
    task_metrics: dict[str, dict[str, Any]] | None = None  # task key -> all metrics of that task (optional)
    groups: dict[str, float | None]  # headline group -> score (None: a member task is missing)
    group_order: list[str]  # display order of `groups`, data-driven (nano and DataComp differ)
    average_group: str = "Average"  # which group is the overall average (the board sorts on it)
    missing_tasks: list[str]  # scored tasks with no result
    selection: SelectionStats
    compute: dict[str, StageCompute]  # stage ("score", "score:<scorer>", "sample", "train", "eval") -> cost
    oracle: dict[str, OracleCounts] | None = None  # nano only: noise type -> totals and kept uids
    harness_version: str = Field(min_length=1)  # filterbench.__version__
    git: GitInfo
    created_at: str  # ISO 8601 time the record was written (never used by the board)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")  # sha256 of the canonical JSON without `digest`

    _source: str = PrivateAttr(default="record")  # the file it was read from, for error messages

    @property
    def source(self) -> str:
        """The file (or label) the record was validated from."""
        return self._source

    @field_validator("created_at")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        datetime.fromisoformat(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _groups_consistent(self) -> Record:
        order = self.group_order
        if sorted(order) != sorted(self.groups) or len(set(order)) != len(order):
            raise ValueError(f"group_order {order} must list each key of groups {sorted(self.groups)} once")
        if self.average_group not in self.groups:
            raise ValueError(f"average_group {self.average_group!r} is not one of the groups {order}")
        return self


def record_digest(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a record without its ``digest`` field."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def validation_reason(exc: ValidationError) -> str:
    """Pydantic's errors on one line: ``keys.eval: String should match pattern ...; seed: Field required``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_record(data: Any, source: str = "record") -> Record:
    """Validate a parsed record; raise :class:`RecordError` naming ``source`` and the reason.

    The schema is checked first (a malformed record reports pydantic's reason), then the digest, computed over
    the data exactly as stored, so even a change that the schema would coerce (``1`` to ``1.0``) is caught.
    """
    if not isinstance(data, dict):
        raise RecordError(f"{source}: a record is a JSON object, got {type(data).__name__}")
    version = data.get("record_version")
    if version != RECORD_VERSION:
        raise RecordError(f"{source}: record_version {version!r} is not {RECORD_VERSION} "
                          "(the version this harness reads)")
    try:
        record = Record.model_validate(data)
    except ValidationError as exc:
        raise RecordError(f"{source}: invalid record: {validation_reason(exc)}") from None
    expected = record_digest(data)
    if record.digest != expected:
        raise RecordError(f"{source}: digest mismatch (the record was edited after it was written; "
                          f"stored {record.digest[:19]}..., content hashes to {expected[:19]}...)")
    record._source = source
    return record
