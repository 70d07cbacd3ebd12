"""The embedded nano world: a procedural image-caption world written in DataComp's exact formats.

Nothing can be downloaded on a laptop, so the harness builds its own pool, reference models, auxiliary sets and
eval suite, deterministically, in minutes (``docs/nano.md`` describes the world and every noise type).

Python API (builds on first use, then reuses the cached, content-addressed world)::

    from filterbench.harness.nano import get_world

    world = get_world("xs")            # or "default"; root=None -> $FILTERBENCH_HOME/nano/<size>-<key>/
    world.pool_dir                     # DataComp pool: metadata/*.parquet + .npz, shards/*.tar
    world.pool()                       # filterbench.harness.pool.Pool over it
    world.oracle()                     # pandas DataFrame, pool order: uid, noise_type, concepts, head/tail, ...
    world.evalsets_dir                 # wds_nano-*_test/ folders (DataComp's eval layout)
    world.tasklist                     # path of tasklists/nano_v1.yaml (load_tasklist(world.tasklist))
    world.model_path("l14")            # open_clip checkpoint of the L/14 stand-in ("b32", "l14", "dino")
    world.load_model("l14")            # (model, preprocess, tokenizer) via open_clip
    world.aux_dir / "hq"               # high-quality image-text set (pool layout)
    world.aux_dir / "downstream"       # labelled downstream training set (ImageNet-train role)
    world.aux_dir / "labelled" / "count"   # other labelled training sets
    world.downstream_features          # .npz: labels + b32_img/l14_img/dino_img of the downstream set
    world.concepts                     # concept vocabulary (object names), ImageNet-21k's role
    world.manifest                     # composition, reference zero-shot accuracy, config

The pool also carries pool-local inputs for recipes (``harness/targets.py``): ``pool/targets/imagenet_train.npz``
(the downstream set's embeddings) and ``pool/targets/imagenet21k.txt`` (the concept vocabulary).

Plugins never see the oracle through the pool API: it lives beside the pool (``oracle/``), for analysis and the
leaderboard only.  CLI: ``filterbench nano build [--size xs|default] [--out DIR]`` and ``filterbench nano info``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from filterbench.harness.nano.world import PRESETS, get_config

__all__ = ["PRESETS", "NanoWorld", "build_world", "get_config", "get_world", "register_models"]


@dataclass(frozen=True)
class NanoWorld:
    """A built nano world (a folder holding ``manifest.json`` and ``_COMPLETE``)."""

    root: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    @property
    def size(self) -> str:
        return self.manifest["size"]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def pool_dir(self) -> Path:
        return self.root / "pool"

    @property
    def oracle_dir(self) -> Path:
        return self.root / "oracle"

    @property
    def evalsets_dir(self) -> Path:
        return self.root / "evalsets"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def aux_dir(self) -> Path:
        return self.root / "aux"

    @property
    def downstream_features(self) -> Path:
        """``.npz`` of the downstream (ImageNet-train role) set: ``labels`` and unit-norm ``b32_img``,
        ``l14_img``, ``dino_img`` (the pool's feature names)."""
        return self.aux_dir / "downstream" / "features.npz"

    @property
    def concepts(self) -> Path:
        """The concept vocabulary (one word per line: object class names, singular and plural), the role of
        ImageNet-21k's synsets for the text-based filter."""
        return self.root / "concepts.txt"

    @property
    def tasklist(self) -> Path:
        from filterbench.harness.nano.evalsuite import TASKLIST_PATH

        return TASKLIST_PATH

    def pool(self):
        from filterbench.harness.pool import Pool

        return Pool(self.pool_dir)

    def oracle(self):
        """The ground truth of every pool row, in pool order (metadata shards sorted by name)."""
        import pandas as pd

        parts = [pd.read_parquet(p) for p in sorted(self.oracle_dir.glob("*.parquet"))]
        return pd.concat(parts, ignore_index=True)

    def model_name(self, role: str) -> str:
        return self.manifest["models"][role]["name"]

    def model_path(self, role: str) -> Path:
        return self.root / self.manifest["models"][role]["file"]

    def load_model(self, role: str):
        """(model, preprocess, tokenizer) of a reference model, loaded by open_clip."""
        from filterbench.harness.nano.refmodels import load_reference

        return load_reference(self.model_name(role), self.model_path(role))


def register_models() -> None:
    """Make the nano model configs (``nano-ref-*``) known to open_clip in this process."""
    from filterbench.harness.nano.refmodels import register_models as _register

    _register()


def build_world(size: str = "xs", out: str | Path | None = None, seed: int = 0, force: bool = False,
                log=None, **overrides) -> NanoWorld:
    """Build the world (or reuse a complete one with the same key); see :func:`build.build_world`."""
    from filterbench.harness.nano.build import build_world as _build

    return NanoWorld(_build(size, out=out, seed=seed, force=force, log=log, **overrides))


def get_world(size: str = "xs", root: str | Path | None = None, seed: int = 0, log=None) -> NanoWorld:
    """The nano world of ``size``, built on first use.  ``root``: a folder to hold it (like ``--out``)."""
    return build_world(size, out=root, seed=seed, log=log)
