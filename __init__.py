"""filterbench: a plugin-based benchmark harness for CLIP data-filtering methods.

The public Python API::

    from filterbench import get_scorer, get_sampler
    sampler = get_sampler("top_fraction", fraction=0.3)
    counts = sampler(scores_array, budget=len(scores_array), rng=0)

Plugin authors import :data:`hookimpl` and subclass :class:`Scorer` or :class:`Sampler`.
"""

from __future__ import annotations

import sys as _sys
from typing import Any

from filterbench.harness.contract import (
    Budget,
    Needs,
    Params,
    PoolBatch,
    Sampler,
    ScoreInput,
    Scorer,
    ScoreTable,
    StageContext,
)
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness import testing  # noqa: E402  (light: heavy imports happen inside its functions)

# `filterbench.testing` is harness/testing.py; registered under the public name plugin authors import
_sys.modules.setdefault(__name__ + ".testing", testing)

__version__ = "0.1.0"

__all__ = [
    "Budget", "Needs", "Params", "PoolBatch", "Sampler", "ScoreInput", "Scorer", "ScoreTable", "StageContext",
    "hookimpl", "get_scorer", "get_sampler", "__version__",
]


def get_scorer(name: str, **params: Any) -> Scorer:
    """A configured scorer instance by registered name (unknown names fail with "did you mean")."""
    from filterbench.harness.manager import get_plugins

    return get_plugins().scorer_class(name)(**params)


def get_sampler(name: str, **params: Any) -> Sampler:
    """A configured sampler instance, e.g. ``get_sampler("top_fraction", fraction=0.3)``."""
    from filterbench.harness.manager import get_plugins

    return get_plugins().sampler_class(name)(**params)
