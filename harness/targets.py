"""Declared inputs that live outside the pool: target embedding sets and concept vocabularies.

Several filters compare the pool with something else: NormSim and DataComp's image-based filter with a
*target set* of image embeddings (ImageNet-1k train at real scale, the downstream training set on nano), the
text-based filter with a *concept vocabulary* (ImageNet-21k synsets, the nano world's concepts).  Scorers
name these inputs with one string param, resolved here, so nano and real scale run the same code.

A spec is resolved in this order:
    1. a *pool-local* input: a bare name ``NAME`` with ``POOL/targets/NAME.npz`` (``.npy``, ``.pt``) for
       target sets or ``POOL/targets/NAME.txt`` for vocabularies.  This is how one recipe serves every scale:
       a pool ships the inputs in the roles the recipes name (the nano world writes its downstream training
       set, embedded with the pool's reference model, as ``targets/imagenet_train.npz``, and its concept
       vocabulary as ``targets/imagenet21k.txt``);
    2. an input that the pool's *world* declares under that name (:func:`declare_pool_inputs`; a registered
       DataComp download declares its ImageNet-train features as ``imagenet_train``);
    3. a registered name, optionally with an argument after a colon (``name:arg``);
    4. a path.

Target sets (``resolve_target(spec, feature, pool_root)``) are float32 (M, d) arrays read from
    * ``.npy`` (2-D), ``.npz`` (the array named ``feature``, e.g. the pool's ``l14_img``, else
      ``image_features``, else the only one), ``.pt`` (DataComp's asset layout: a dict with
      ``image_features``, a tensor, or a numpy array), or a directory of such files (sorted by name, rows
      concatenated);
    * registered names: ``imagenet_train`` (the ImageNet-1k-train role: pool-local if present, else
      ``datacomp_in1k_l14``); ``datacomp_in1k_l14`` (DataComp's ``in1k_clip_vit_l14_{0..4}.pt``, OpenAI L/14
      features of ImageNet-1k train, from ``$FILTERBENCH_DATACOMP_ASSETS`` or ``~/.cache/datacomp``);
      more with :func:`register_target_set` (the nano provider, ``filterbench.plugins.nano_world``, adds
      ``nano`` / ``nano:<size>``: its downstream set's features, an ``.npz`` keyed by the pool's feature names).

Concept vocabularies (``resolve_concepts(spec, pool_root)``): a text file with one concept per line, either
WordNet ids (``n01440764``; matched by synset offset) or plain words/phrases (matched by token); registered
names: ``imagenet21k`` (pool-local if present, else timm's ``imagenet21k_goog_synsets.txt``); more with
:func:`register_concept_set` (the nano provider adds ``nano[:<size>]``, the nano world's object names).

Identity: the spec string is a scorer param, so it enters the artifact key; the content digest of what was
read is recorded next to the fitted state (the pool key does not cover ``POOL/targets/``; pin a digest with
the scorers' ``target_sha256`` param).  Prefer names over absolute paths: keys should not hold absolute paths.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from filterbench.harness.errors import FilterbenchError

TARGET_SUFFIXES = (".npy", ".npz", ".pt")
_WNID = re.compile(r"^n(\d{8})$")


class TargetError(FilterbenchError):
    """A target set or concept vocabulary cannot be found or read."""


@dataclass(frozen=True)
class TargetSet:
    """Target image embeddings.

    Attributes:
        embeddings: float32 (M, d), as stored (callers normalise when their method says so).
        source: what was read, for the record.
        digest: sha256 of the float32 bytes, so a changed file is visible in the fitted state's record.
    """

    embeddings: np.ndarray
    source: str
    digest: str

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.embeddings, axis=1, keepdims=True)
        return (self.embeddings / np.maximum(norms, 1e-12)).astype(np.float32)

    def describe(self) -> dict:
        rows, dim = self.embeddings.shape
        return {"source": self.source, "rows": int(rows), "dim": int(dim), "sha256": self.digest}


@dataclass(frozen=True)
class ConceptSet:
    """A concept vocabulary: WordNet synset offsets (``kind="wordnet"``) or lower-cased words."""

    kind: str
    offsets: frozenset[int]
    words: frozenset[str]
    source: str
    digest: str

    def __len__(self) -> int:
        return len(self.offsets) if self.kind == "wordnet" else len(self.words)


# -- registries ------------------------------------------------------------------------------------------
TargetResolver = Callable[[str, str], "list[Path] | np.ndarray"]
ConceptResolver = Callable[[str], Path]
_TARGETS: dict[str, TargetResolver] = {}
_CONCEPTS: dict[str, ConceptResolver] = {}
_POOL_INPUTS: dict[Path, dict[str, Path]] = {}


def register_target_set(name: str, resolver: TargetResolver) -> None:
    """Make ``name`` (and ``name:<arg>``) resolvable; ``resolver(arg, feature)`` returns files or an array."""
    _TARGETS[name] = resolver


def register_concept_set(name: str, resolver: ConceptResolver) -> None:
    """Make ``name`` (and ``name:<arg>``) resolvable; ``resolver(arg)`` returns the vocabulary file."""
    _CONCEPTS[name] = resolver


def declare_pool_inputs(pool_root: str | Path, inputs: dict[str, Path]) -> None:
    """Make ``inputs`` (name -> file or folder) resolvable by bare name for scorers of the pool at ``pool_root``.

    Worlds call this when they are opened for a run, in the main process: forked score workers inherit it.
    """
    _POOL_INPUTS.setdefault(Path(pool_root).resolve(), {}).update({k: Path(v) for k, v in inputs.items()})


def _declared(spec: str, pool_root: str | Path | None) -> Path | None:
    if pool_root is None:
        return None
    return _POOL_INPUTS.get(Path(pool_root).resolve(), {}).get(spec)


def _split(spec: str) -> tuple[str, str]:
    name, _, arg = spec.partition(":")
    return name, arg


# -- target sets -----------------------------------------------------------------------------------------
def pool_local(spec: str, pool_root: str | Path | None, suffixes: tuple[str, ...]) -> Path | None:
    """``POOL/targets/<spec><suffix>`` for a bare name, when the pool ships it."""
    if pool_root is None or not re.fullmatch(r"[A-Za-z0-9_.-]+", spec):
        return None
    for suffix in suffixes:
        candidate = Path(pool_root) / "targets" / f"{spec}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def resolve_target(spec: str, feature: str = "image_features",
                   pool_root: str | Path | None = None) -> TargetSet:
    """Load the target embeddings named by ``spec`` (see the module docstring) as float32 (M, d)."""
    local = pool_local(spec, pool_root, TARGET_SUFFIXES)
    if local is not None:
        return _target(_read_files([local], feature), f"{spec} (pool-local {local.name})")
    declared = _declared(spec, pool_root)
    if declared is not None:
        return _target(_read_files(_target_files(declared, spec), feature), f"{spec} (world input {declared})")
    name, arg = _split(spec)
    if name in _TARGETS and not Path(spec).exists():
        found = _TARGETS[name](arg, feature)
        if isinstance(found, np.ndarray):
            return _target(np.asarray(found, dtype=np.float32), f"{spec}")
        return _target(_read_files(list(found), feature), f"{spec} ({', '.join(p.name for p in found)})")
    path = Path(spec).expanduser()
    if path.exists():
        return _target(_read_files(_target_files(path, spec), feature), str(path))
    raise TargetError(f"target set {spec!r}: no such file or directory, and not a registered name "
                      f"(known: {sorted(_TARGETS)})")


def _target_files(path: Path, spec: str) -> list[Path]:
    """A target file, or the target files of a folder (sorted by name)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in TARGET_SUFFIXES)
    if not files:
        raise TargetError(f"target set {spec!r}: no {'/'.join(TARGET_SUFFIXES)} files in {path}")
    return files


def _target(array: np.ndarray, source: str) -> TargetSet:
    if array.ndim != 2 or len(array) == 0:
        raise TargetError(f"target set {source}: expected a non-empty 2-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise TargetError(f"target set {source}: non-finite values")
    array = np.ascontiguousarray(array, dtype=np.float32)
    return TargetSet(array, source, hashlib.sha256(array.tobytes()).hexdigest())


def _read_files(files: list[Path], feature: str) -> np.ndarray:
    parts = [_read_one(p, feature) for p in files]
    dims = {p.shape[1] if p.ndim == 2 else None for p in parts}
    if len(dims) != 1 or None in dims:
        shapes = [p.shape for p in parts]
        raise TargetError(f"target files {[str(f) for f in files]} disagree on shape: {shapes}")
    return np.concatenate(parts).astype(np.float32, copy=False)


def _read_one(path: Path, feature: str) -> np.ndarray:
    if not path.is_file():
        raise TargetError(f"target file {path} does not exist")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            for key in (feature, "image_features"):
                if key in npz.files:
                    return npz[key].astype(np.float32)
            if len(npz.files) == 1:
                return npz[npz.files[0]].astype(np.float32)
            raise TargetError(f"{path}: no array {feature!r} (has {sorted(npz.files)})")
    if path.suffix == ".pt":
        return _read_torch(path)
    raise TargetError(f"{path}: unsupported target file type (use {', '.join(TARGET_SUFFIXES)})")


def _read_torch(path: Path) -> np.ndarray:
    """A ``torch.save``d tensor, dict with ``image_features``, or numpy array (DataComp's centroid files).

    Loaded with ``weights_only=True``; numpy arrays are allowed through an explicit allow-list (under both
    numpy 1's and numpy 2's module names, since DataComp's assets were pickled with numpy 1).
    """
    import torch

    with torch.serialization.safe_globals(_numpy_globals()):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        if "image_features" not in obj:
            raise TargetError(f"{path}: torch file without 'image_features' (keys {sorted(obj)})")
        obj = obj["image_features"]
    if isinstance(obj, np.ndarray):
        return obj.astype(np.float32)
    return torch.as_tensor(obj).float().numpy()


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct
    dtype_classes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64)]
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            *dtype_classes]


def read_array(path: str | Path, key: str = "image_features") -> np.ndarray:
    """One 2-D float32 array from a .npy, .npz (array ``key`` or the only one) or .pt file."""
    return _read_one(Path(path).expanduser(), key)


def _datacomp_assets() -> Path:
    return Path(os.environ.get("FILTERBENCH_DATACOMP_ASSETS", "~/.cache/datacomp")).expanduser()


def _datacomp_in1k(arg: str, feature: str) -> list[Path]:
    root = _datacomp_assets()
    files = [root / f"in1k_clip_vit_l14_{i}.pt" for i in range(5)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise TargetError(f"target set 'datacomp_in1k_l14': missing {missing} in {root} (DataComp's baseline "
                          "assets; set FILTERBENCH_DATACOMP_ASSETS to the folder holding them)")
    return files


# -- concept vocabularies --------------------------------------------------------------------------------
def resolve_concepts(spec: str, pool_root: str | Path | None = None) -> ConceptSet:
    """Load the concept vocabulary named by ``spec`` (see the module docstring)."""
    name, arg = _split(spec)
    path = pool_local(spec, pool_root, (".txt",)) or _declared(spec, pool_root)
    if path is None:
        registered = name in _CONCEPTS and not Path(spec).exists()
        path = _CONCEPTS[name](arg) if registered else Path(spec).expanduser()
    if not path.is_file():
        raise TargetError(f"concept set {spec!r}: no such file, and not a registered name "
                          f"(known: {sorted(_CONCEPTS)})")
    raw = path.read_bytes()
    return parse_concepts(raw.decode("utf-8"), f"{spec} ({path.name})", hashlib.sha256(raw).hexdigest())


def parse_concepts(text: str, source: str = "<text>", digest: str = "") -> ConceptSet:
    """One concept per line (``#`` comments and blank lines skipped); first field of a line is the concept.

    All WordNet ids (``n########``) -> a WordNet vocabulary; otherwise the lines are words (lower-cased).
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise TargetError(f"concept set {source}: empty")
    ids = [_WNID.match(ln.split()[0]) for ln in lines]
    if all(ids):
        offsets = frozenset(int(m.group(1)) for m in ids)
        return ConceptSet("wordnet", offsets, frozenset(), source, digest)
    return ConceptSet("words", frozenset(), frozenset(ln.lower() for ln in lines), source, digest)


def _imagenet21k(arg: str) -> Path:
    """timm's ImageNet-21k synset list (21,843 WordNet ids), found without importing timm (slow)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise TargetError("concept set 'imagenet21k' needs timm (installed with open_clip_torch), or a "
                          "pool-local targets/imagenet21k.txt")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info" / "imagenet21k_goog_synsets.txt"
    if not path.is_file():
        raise TargetError(f"concept set 'imagenet21k': {path} not found in this timm version")
    return path


register_target_set("datacomp_in1k_l14", _datacomp_in1k)
register_target_set("imagenet_train", _datacomp_in1k)  # reached only when the pool ships no imagenet_train
register_concept_set("imagenet21k", _imagenet21k)


def resolve_pinned_target(name: str, feature: str, pool_root, pinned: str | None, plugin: str):
    """:func:`resolve_target`, refusing a target whose sha256 differs from the one a recipe pinned."""
    from filterbench.harness.errors import ParamsError

    target = resolve_target(name, feature=feature, pool_root=pool_root)
    if pinned is not None and pinned != target.digest:
        raise ParamsError(f"{plugin}: target {name!r} has sha256 {target.digest}, pinned {pinned}")
    return target
