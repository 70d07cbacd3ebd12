"""The plugin contract: the base classes a scorer or a sampler subclasses.

A **scorer** maps a batch of pool rows (uids, the metadata columns and stored feature arrays it declared, and
optionally images) to one or more float32 values per uid; higher means better.  A **sampler** maps score columns
aligned to pool order, plus the training budget, to a count per uid (``subset``/``multiset``) or to one count
vector per training segment (``schedule``).

Plugins write one method (``score_batch`` or ``sample``); everything else (loading only the declared inputs,
batching, seeding, caching, validating outputs, writing artifacts) is the harness's job.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

import numpy as np
import pydantic

from filterbench.harness.errors import ParamsError, did_you_mean

SamplerMode = Literal["subset", "multiset", "schedule"]
SAMPLER_MODES: tuple[str, ...] = ("subset", "multiset", "schedule")


class Params(pydantic.BaseModel):
    """Base class of every plugin's ``Params``: typed, frozen, unknown keys and NaN values rejected.

    NaN compares false with everything, so a NaN threshold or fraction silently selects nothing; infinities
    stay legal (``alpha: inf`` means no repeats).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    @pydantic.model_validator(mode="after")
    def _no_nan(self) -> "Params":
        for name, value in self:
            if _has_nan(value):
                raise ValueError(f"{name} is NaN (not a number); give a number")
        return self


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, pydantic.BaseModel):
        return any(_has_nan(v) for _, v in value)
    return False


@dataclass(frozen=True)
class Needs:
    """What a scorer reads from the pool.  Only these are loaded.

    Attributes:
        metadata: parquet columns besides ``uid`` (e.g. ``("text", "original_width")``).
        features: arrays of the ``.npz`` sidecar (e.g. ``("l14_img", "l14_txt")``), given as float32.
        images: whether decoded images (PIL, RGB) from the tar shards are needed.
    """

    metadata: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    images: bool = False


@dataclass(frozen=True)
class ScoreInput:
    """Another scorer whose output columns this scorer consumes (HYPE's composite, M-FLYT's mixer).

    Its columns reach the consumer as ``"<scorer>.<column>"``; when two inputs are the same scorer with
    different params (CLIP score of two models), they are told apart as ``"<scorer>[0].<column>"``,
    ``"<scorer>[1].<column>"`` in the order :meth:`Scorer.required_scores` lists them
    (:func:`input_prefixes`).
    """

    scorer: str
    params: Mapping[str, Any] = field(default_factory=dict)


def input_prefixes(scorers: list[str]) -> list[str]:
    """The column prefix of each consumed scorer: its name, or ``name[j]`` when the name occurs more than once
    (``j`` counting that name's occurrences from 0)."""
    seen: dict[str, int] = {}
    prefixes = []
    for name in scorers:
        j = seen.get(name, 0)
        seen[name] = j + 1
        prefixes.append(name if scorers.count(name) == 1 else f"{name}[{j}]")
    return prefixes


@dataclass
class PoolBatch:
    """A batch of pool rows in pool order (or in the seeded batch order for batch-dependent scorers).

    Attributes:
        shard: the metadata shard's stem the rows come from.
        uids: the rows' uids as 32-hex strings.
        metadata: declared parquet columns, name -> numpy array.
        features: declared npz arrays, name -> float32 array of shape (rows, dim).
        images: decoded images or None per row (a failed download has no image), when declared.
        scores: consumed scorers' columns, ``"<scorer>.<column>"`` -> float32 array.
    """

    shard: str
    uids: np.ndarray
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    images: list | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.uids)


@dataclass
class StageContext:
    """What the harness hands a plugin besides its data.

    Attributes:
        rng: a generator seeded from (run seed, stage, plugin, shard); the only legal source of randomness.
        seed: the run seed (for libraries that need an int: derive with ``filterbench.harness.seeding``).
        state_dir: where ``fit`` writes and ``score_batch`` reads learned state.  The fit stage keeps it as
            its own artifact (``fits/``) and the score artifact holds a copy, so re-scoring never re-fits.
        checkpoint_dir: ``fit`` only: where to keep resumable checkpoints.  It survives a killed fit (the
            next run of the same fit finds them) and is deleted once the fit completes.
        device: ``"cpu"`` or ``"cuda"``; plugins move their models there.
        log: a logger whose records land in the artifact's log file.
        shard_index: index of the shard being processed (-1 outside per-shard work).
        stats: numbers a plugin wants recorded in the manifest (see :meth:`stat`).
        scores: ``fit`` only: the columns of the consumed scorers (:meth:`Scorer.required_scores`) over the
            whole pool, a :class:`ScoreColumns`; ``None`` when the scorer consumes none.
    """

    rng: np.random.Generator
    seed: int = 0
    state_dir: Path | None = None
    checkpoint_dir: Path | None = None
    device: str = "cpu"
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("filterbench.plugin"))
    shard_index: int = -1
    stats: dict[str, float] = field(default_factory=dict)
    scores: "ScoreColumns | None" = None

    def stat(self, name: str, value: float) -> None:
        """Record a number (e.g. a fitted model's validation loss) in the stage manifest."""
        self.stats[name] = float(value)


class ScoreColumns:
    """Consumed score columns over a whole pool, in pool order, read on demand (what ``fit`` sees).

    Args:
        parts: per metadata shard (pool order), a callable returning that shard's columns
            (``"<scorer>.<column>"`` -> float32 array).
        names: the qualified column names available.
    """

    def __init__(self, parts: list, names: tuple[str, ...]):
        self._parts, self.names, self._cache = parts, tuple(names), {}

    def column(self, name: str) -> np.ndarray:
        """One column over the pool (qualified, or bare when unambiguous); unknown names list the choices."""
        qualified = ScoreTable({n: np.zeros(0) for n in self.names}).column_name(name)
        if qualified not in self._cache:
            self._cache[qualified] = np.concatenate([read()[qualified] for read in self._parts]) \
                if self._parts else np.zeros(0, np.float32)
        return self._cache[qualified]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Budget:
    """The fixed training budget a sampler allocates.

    Attributes:
        samples_seen: total samples the training stage will feed (the scale's budget).
        segments: number of training segments (DataComp's checkpoints, 5 by default).
        pool_size: number of uids in the pool.
    """

    samples_seen: int
    segments: int = 5
    pool_size: int = 0

    def segment_sizes(self) -> list[int]:
        """Samples seen per segment: ``samples_seen // segments``, the remainder going to the last one."""
        base = self.samples_seen // self.segments
        sizes = [base] * self.segments
        sizes[-1] += self.samples_seen - base * self.segments
        return sizes


class ScoreTable:
    """Score columns aligned to pool order, with the pool's uids when known (for tie-breaking by uid)."""

    def __init__(self, columns: Mapping[str, np.ndarray], uids: np.ndarray | None = None):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"score columns differ in length: { {k: len(v) for k, v in columns.items()} }")
        self.columns = {k: np.asarray(v) for k, v in columns.items()}
        self.size = lengths.pop() if lengths else (0 if uids is None else len(uids))
        self.uids = uids

    @classmethod
    def coerce(cls, scores: Any, uids: np.ndarray | None = None) -> "ScoreTable":
        """Accept a ScoreTable, a 1-D array (column ``score``), a mapping or a pandas DataFrame."""
        if isinstance(scores, ScoreTable):
            return scores
        if isinstance(scores, np.ndarray):
            return cls({"score": scores}, uids)
        if hasattr(scores, "columns") and hasattr(scores, "to_numpy"):  # DataFrame
            cols = {c: scores[c].to_numpy() for c in scores.columns if c != "uid"}
            if uids is None and "uid" in scores.columns:
                uids = scores["uid"].to_numpy()
            return cls(cols, uids)
        return cls(dict(scores), uids)

    def column(self, name: str | None) -> np.ndarray:
        """One column by name; ``None`` picks the only column, or fails listing the choices."""
        return self.columns[self.column_name(name)]

    def column_name(self, name: str | None) -> str:
        """The qualified name ``name`` refers to (see :meth:`column`)."""
        if name is None:
            if len(self.columns) != 1:
                raise ParamsError(f"several score columns {sorted(self.columns)}; name one with -p column=...")
            return next(iter(self.columns))
        if name in self.columns:
            return name
        # allow the bare column name when it is unambiguous ("score" for "clip_score.score")
        matches = [k for k in self.columns if k.split(".", 1)[-1] == name]
        if len(matches) == 1:
            return matches[0]
        hint = did_you_mean(name, [*self.columns, *sorted({k.split(".", 1)[-1] for k in self.columns})])
        raise ParamsError(f"no score column {name!r}{hint} (available: {', '.join(sorted(self.columns))})")

    def __len__(self) -> int:
        return self.size


class _Plugin(ABC):
    """Identity and parameters shared by scorers and samplers."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Params: ClassVar[type[Params]] = Params
    #: distributions this plugin imports lazily; checked when instantiated
    requires_packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self._check_packages()
        try:
            self.params = self.Params(**params)
        except pydantic.ValidationError as exc:
            problems = "; ".join(self._problem(err) for err in exc.errors())
            raise ParamsError(f"plugin {self.name!r}: invalid params: {problems}") from None

    def _problem(self, err: Any) -> str:
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            return f"{where}: unknown parameter{did_you_mean(where, self.Params.model_fields)}"
        message = err["msg"].removeprefix("Value error, ")
        return f"{where}: {message}" if where else message

    def _check_packages(self) -> None:
        import importlib.util

        missing = [p for p in self.requires_packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ParamsError(f"plugin {self.name!r} needs packages that are not installed: {missing}")

    def __getstate__(self) -> dict[str, Any]:
        """A plugin travels to spawned or remote workers as its params only: models, indexes and caches it
        loaded are rebuilt there by ``setup`` (they may not pickle, and they would be large)."""
        if type(self).__init__ is _Plugin.__init__:
            return {"params": self.params}
        return dict(self.__dict__)  # a custom constructor may have set more: keep everything

    def identity(self) -> dict[str, Any]:
        """What enters a content key: name, version and the resolved params."""
        return {"name": self.name, "version": self.version, "params": self.params.model_dump(mode="json")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


@dataclass(frozen=True)
class Resources:
    """What one worker of a scorer (or any stage task) needs: CPU cores, GPUs and memory.

    Executors read it: Ray asks for ``num_cpus``/``num_gpus``/``memory`` per task or actor (fractional GPUs
    pack several workers on one GPU), Slurm scripts ask for ``--cpus-per-task``/``--gpus-per-task``/``--mem``.
    ``gpus > 0`` also marks a model-holding task: Ray runs it on an actor pool that sets up once per actor.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0


class Scorer(_Plugin):
    """Base class of scorers.  Subclasses set ``name`` and implement :meth:`score_batch`.

    Class attributes:
        needs: which pool inputs to load (:class:`Needs`).
        outputs: names of the float32 columns produced, ``("score",)`` by default.
        batch_dependent: True when a row's score depends on which rows share its batch (NegCLIPLoss).  The
            harness then shuffles rows with a generator seeded from ``batch_seed`` (part of the artifact key)
            and hands :meth:`score_batch` one whole shard per call so the scorer can form its batches from
            ``ctx.rng``; outputs are returned in the order received.
        batch_rows: preferred batch size for batch-independent scorers (outputs must not depend on it).
        resources: what one scoring worker needs (:class:`Resources`); scorers that run a model on images
            declare GPUs here, which the Ray executor turns into an actor pool.
    """

    needs: ClassVar[Needs] = Needs()
    resources: ClassVar[Resources] = Resources()
    outputs: ClassVar[tuple[str, ...]] = ("score",)
    batch_dependent: ClassVar[bool] = False
    batch_rows: ClassVar[int] = 65536

    def required_scores(self) -> tuple[ScoreInput, ...]:
        """Other scorers whose columns this one consumes (may depend on params).  Default: none."""
        return ()

    def output_columns(self) -> tuple[str, ...]:
        """The output column names (may depend on params).  Default: :attr:`outputs`."""
        return tuple(self.outputs)

    @property
    def has_fit(self) -> bool:
        return type(self).fit is not Scorer.fit

    def fit(self, pool: Any, ctx: StageContext) -> None:
        """Optional: train a model on the pool (or on auxiliary data) before scoring.

        Called once, in the main process, before any :meth:`score_batch`, as the *fit stage*: its own
        content-addressed artifact (``fits/<scorer>-<key>``, keyed by the scorer's :meth:`fit_identity`, the
        pool, the consumed scores and the score seed), so a fitted state is computed once and reused by every
        score artifact that needs it.  Write the fitted state under ``ctx.state_dir``; keep resumable
        checkpoints under ``ctx.checkpoint_dir`` (a killed fit is re-run with the same folders, so a fit that
        checks for its latest checkpoint resumes from it).  ``ctx.scores`` holds the consumed score columns.
        """

    def fit_identity(self) -> dict[str, Any]:
        """What enters the fit stage's key.  Default: :meth:`identity` (every param).  Override to leave out
        params that only change scoring, so that changing them re-scores without re-fitting."""
        return self.identity()

    def setup(self, ctx: StageContext) -> None:
        """Optional: load models or fitted state once per worker process."""

    @abstractmethod
    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> Mapping[str, np.ndarray] | np.ndarray:
        """Score one batch.

        Returns:
            One array per output column (a mapping), or a single array when there is one output; each of
            length ``len(batch)``, in batch order.  Values are cast to float32 and must be finite.
        """


@dataclass(frozen=True)
class Cut:
    """A subset selection that is a cut on one score column, which the sample stage can compute as map + reduce
    over score parts without loading the column (:meth:`Sampler.cut`).

    Attributes:
        column: the column (as for ``ScoreTable.column``: qualified, bare, or None for the only one).
        rule: ``top`` keeps exactly ``int(value)`` rows (score desc, ties by ascending uid); ``threshold`` keeps
            scores ``>= value``; ``datacomp_fraction`` is DataComp's ``get_threshold`` with fraction ``value``
            (``t`` = the ``int(N*value)+1``-th largest score, keep ``>= t``).  NaN is never kept.
    """

    column: str | None
    rule: Literal["top", "threshold", "datacomp_fraction"]
    value: float


class Sampler(_Plugin):
    """Base class of samplers.  Subclasses set ``name`` and ``mode`` and implement :meth:`sample`.

    Modes and the invariants the harness enforces:
        subset: counts are 0 or 1; training resamples the kept uids up to the budget, as DataComp does.
        multiset: counts are non-negative and sum to ``budget.samples_seen``; training makes one pass.
        schedule: shape (segments, pool_size); row ``e`` is what training feeds in segment ``e``.
    """

    mode: ClassVar[SamplerMode] = "subset"

    def score_columns(self) -> tuple[str, ...]:
        """Score columns read (qualified ``scorer.column`` or bare).  Default: the ``column`` param if any."""
        column = getattr(self.params, "column", None)
        return (column,) if column else ()

    @abstractmethod
    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        """Return counts: shape (N,) for subset/multiset, (segments, N) for schedule; non-negative integers."""

    def cut(self, budget: Budget) -> Cut | None:
        """Optional: the same selection as :meth:`sample`, stated as a :class:`Cut` on one column.  The sample
        stage then computes it part by part on the run's executor (no column in memory, any pool size) and
        its result must equal :meth:`sample`'s, bit for bit.  Default: None (the stage calls ``sample``)."""
        return None

    def __call__(self, scores: Any, budget: Budget | int, rng: np.random.Generator | int = 0) -> np.ndarray:
        """Sample straight from a numpy array, mapping or DataFrame: ``sampler(scores, budget, rng)``.

        ``budget`` may be an int (samples seen; one segment); ``rng`` may be an int seed.  The result is
        checked against the mode's invariants exactly as in the sample stage.
        """
        from filterbench.harness.invariants import check_counts

        table = ScoreTable.coerce(scores)
        if isinstance(budget, (int, np.integer)):
            budget = Budget(samples_seen=int(budget), segments=1, pool_size=len(table))
        if budget.pool_size != len(table):
            budget = Budget(budget.samples_seen, budget.segments, len(table))
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        counts = self.sample(table, budget, rng)
        return check_counts(counts, self, budget)
