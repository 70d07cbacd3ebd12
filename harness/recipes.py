"""Recipes: versioned YAML files naming the scorers, the sampler and their params (``baselines/*.yaml``).

A recipe file::

    version: 1                       # bumped on any change that alters outputs
    name: clip_score_l14_top30
    description: CLIP score (L/14) top 30%, DataComp's baseline
    citation: Gadre et al. 2023, DataComp, Table 3
    include: [_defaults.yaml]        # shared keys; the including file wins on conflicts
    scorers:
      - {name: clip_score, params: {model: l14}}
    sampler: {name: top_fraction, params: {fraction: 0.3, column: clip_score.score}}
    scales: [nano-xs, nano, small, medium]
    resources: {class: public, uses: [OpenAI CLIP ViT-L/14]}   # what outside the pool the recipe relies on

``resources`` declares the recipe's resource class (the board's track column): ``public`` (public data and
models only), ``private`` (data or models not publicly available, such as DFN's HQITP-trained filter) or
``oracle`` (the nano world's ground truth, a ceiling only); ``uses`` names them for a reader.  It never enters
the recipe's key (it changes no output), and a recipe without it shows as ``undeclared`` on the board.

Files whose name starts with ``_`` are include-only.  Precedence when running: CLI flags > recipe > defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from filterbench.harness.errors import FilterbenchError, RecipeError, did_you_mean, first_line, yaml_problem
from filterbench.harness.hashing import content_key

BASELINES_DIR = Path(__file__).resolve().parent.parent / "baselines"
RECIPE_KEYS = {"version", "name", "description", "citation", "include", "scorers", "sampler", "scales",
               "score_seed", "notes", "oracle", "resources"}
PLUGIN_ENTRY_KEYS = frozenset({"name", "params"})
#: resource classes a recipe can declare, from least to most privileged (docs/leaderboard.md, "Resources")
RESOURCE_CLASSES = ("public", "private", "oracle")


@dataclass(frozen=True)
class PluginSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe (includes merged)."""

    name: str
    version: int
    description: str
    citation: str
    scorers: tuple[PluginSpec, ...]
    sampler: PluginSpec
    scales: tuple[str, ...]
    score_seed: int = 0
    path: str = ""
    resources: str | None = None  # resource class (RESOURCE_CLASSES); None: undeclared
    resources_uses: tuple[str, ...] = ()

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version,
                "scorers": [{"name": s.name, "params": s.params} for s in self.scorers],
                "sampler": {"name": self.sampler.name, "params": self.sampler.params}, "score_seed": self.score_seed}

    def key(self) -> str:
        return content_key(self.identity())


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: unreadable recipe ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping")
    return data


def _merged(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise RecipeError(f"{path}: include cycle through {[str(p) for p in seen]}")
    data = _read_yaml(path)
    merged: dict = {}
    includes = data.pop("include", []) or []
    for include in [includes] if isinstance(includes, str) else includes:
        merged.update(_merged((path.parent / include).resolve(), (*seen, path)))
    merged.update(data)
    return merged


def recipe_path(ref: str | Path) -> Path:
    """A recipe file from a path or a name in ``baselines/`` (unknown names suggest spellings)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path.resolve()
    candidate = BASELINES_DIR / f"{ref}.yaml"
    if candidate.is_file():
        return candidate
    names = [p.stem for p in BASELINES_DIR.glob("*.yaml") if not p.name.startswith("_")]
    hint = did_you_mean(str(ref), names)
    raise RecipeError(f"no recipe {str(ref)!r}{hint} (see `filterbench ls recipes`)")


def load_recipe(ref: str | Path) -> Recipe:
    """Load and shape-check a recipe (plugins are checked by :func:`check_recipe`)."""
    path = recipe_path(ref)
    data = _merged(path)
    _check_keys(path, "recipe key", data, RECIPE_KEYS)
    for required in ("version", "name", "sampler"):
        if required not in data:
            raise RecipeError(f"{path}: missing required key {required!r}")
    entries = data.get("scorers") or []
    if not isinstance(entries, list):
        raise RecipeError(f"{path}: scorers must be a list of {{name, params}}, got {entries!r}")
    scorers = tuple(_plugin_spec(path, f"scorers[{i}]", entry) for i, entry in enumerate(entries))
    sampler = _plugin_spec(path, "sampler", data["sampler"])
    resources, uses = _resources(path, data.get("resources"))
    scales = data.get("scales") or []
    if not isinstance(scales, list) or not all(isinstance(s, str) for s in scales):
        raise RecipeError(f"{path}: scales must be a list of scale names, got {scales!r}")
    return Recipe(name=str(data["name"]), version=_integer(path, data, "version"),
                  description=str(data.get("description", "")), citation=str(data.get("citation", "")),
                  scorers=scorers, sampler=sampler, scales=tuple(scales),
                  score_seed=_integer(path, data, "score_seed", 0), path=str(path), resources=resources,
                  resources_uses=uses)


def _integer(path: Path, data: dict, key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecipeError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    return value


def _check_keys(path: Path, what: str, data: dict, allowed: set[str] | frozenset[str]) -> None:
    """Refuse keys outside ``allowed``: a misspelt key (``parms:``) would otherwise be ignored silently."""
    for key in sorted(set(data) - set(allowed), key=str):
        raise RecipeError(f"{path}: unknown {what} {key!r}{did_you_mean(key, sorted(allowed))} "
                          f"(allowed: {', '.join(sorted(allowed))})")


def _plugin_spec(path: Path, where: str, entry: Any) -> PluginSpec:
    """One ``{name, params}`` entry of a recipe, every key checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RecipeError(f"{path}: {where} must be a mapping {{name: ..., params: {{...}}}}, got {entry!r}")
    _check_keys(path, f"key in {where}", entry, PLUGIN_ENTRY_KEYS)
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise RecipeError(f"{path}: {where}.params must be a mapping, got {params!r}")
    return PluginSpec(entry["name"], dict(params))


def _resources(path: Path, value: Any) -> tuple[str | None, tuple[str, ...]]:
    """``(class, uses)`` of a recipe's ``resources: {class: ..., uses: [...]}`` (None: not declared)."""
    if value is None:
        return None, ()
    classes = " | ".join(RESOURCE_CLASSES)
    if not isinstance(value, dict) or set(value) - {"class", "uses"} or value.get("class") not in RESOURCE_CLASSES:
        raise RecipeError(f"{path}: resources must be {{class: {classes}, uses: [names]}}, got {value!r}")
    uses = value.get("uses") or []
    if not isinstance(uses, list) or not all(isinstance(u, str) for u in uses):
        raise RecipeError(f"{path}: resources.uses must be a list of names, got {uses!r}")
    return value["class"], tuple(uses)


def check_recipe(recipe: Recipe, plugins: Any = None) -> dict:
    """Resolve every plugin and validate its params; returns the resolved identities."""
    from filterbench.harness.manager import get_plugins
    from filterbench.harness.scales import get_scale

    plugins = plugins or get_plugins()
    try:
        instances = [plugins.scorer_class(s.name)(**s.params) for s in recipe.scorers]
        sampler = plugins.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
        check_sampler_columns(sampler, instances)
        for scale in recipe.scales:
            get_scale(scale)
    except FilterbenchError as exc:
        raise RecipeError(f"{recipe.path}: {exc}") from None
    scorers = [s.identity() for s in instances]
    return {"recipe": recipe.identity(), "scorers": scorers, "sampler": sampler.identity(),
            "mode": sampler.mode, "scales": list(recipe.scales)}


def check_sampler_columns(sampler: Any, scorers: list) -> None:
    """Every score column the sampler reads must be one the recipe's scorers output (as the sample stage names
    them, ``<scorer>.<column>``); raises ParamsError listing the available ones, with "did you mean"."""
    import numpy as np

    from filterbench.harness.contract import ScoreTable
    from filterbench.harness.uidscorer import UidOnlyScorer

    available = {f"{s.name}.{c}": np.zeros(0) for s in (scorers or [UidOnlyScorer()]) for c in s.output_columns()}
    table = ScoreTable(available)
    for column in sampler.score_columns():
        table.column_name(column)


def list_recipes() -> list[Recipe]:
    return [load_recipe(p) for p in sorted(BASELINES_DIR.glob("*.yaml")) if not p.name.startswith("_")]
