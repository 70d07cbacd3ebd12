"""Named inputs that learned scorers train from: open_clip models and labelled or paired data sets.

FLYT trains a reference CLIP and scores against a labelled downstream set; DFN and HYPE train on a set of
high-quality pairs.  Each names its inputs with one string param, resolved here, so one recipe serves the nano
world and a real DataComp pool.  A spec is either

    ``world:<name>``  an asset of the world the pool belongs to: the folder above the pool holds a
        ``manifest.json`` with a ``models`` table (role -> {name, file}) and the data sets under ``aux/``.
        The nano world is such a world: models ``b32``, ``l14``, ``dino``; labelled sets ``downstream``
        (the ImageNet-train role) and ``labelled/<task>``; paired set ``hq`` (the HQ-pairs role);
    a path            a file or folder on disk (real scale: a local open_clip checkpoint, ImageNet-train
        written in DataComp's eval layout with a ``train`` split, CC12M in the pool layout).

Model architectures are open_clip config names.  Configs that are not open_clip's own come from folders that
plugins register through the ``register_model_configs`` hook (the nano world's reference models do).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from filterbench.harness.errors import FilterbenchError

WORLD_PREFIX = "world:"


class AssetError(FilterbenchError):
    """A model or data set named by a scorer param cannot be found or read."""


@dataclass(frozen=True)
class ModelRef:
    """An open_clip model: architecture name and checkpoint (None: initialised randomly)."""

    arch: str
    checkpoint: Path | None
    source: str

    def describe(self) -> dict:
        return {"arch": self.arch, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "source": self.source}


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set in DataComp's eval layout: ``classnames.txt``, templates, ``<split>/*.tar``."""

    root: Path
    split: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]

    @property
    def tars(self) -> list[Path]:
        return sorted((self.root / self.split).glob("*.tar"))


def world_root(pool_root: str | Path | None) -> Path | None:
    """The world folder above a pool (the folder holding ``manifest.json`` with a ``models`` table)."""
    if pool_root is None:
        return None
    candidate = Path(pool_root).resolve().parent
    manifest = candidate / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return candidate if isinstance(data, dict) and "models" in data else None


def _world(spec: str, pool_root) -> tuple[Path, str]:
    root = world_root(pool_root)
    if root is None:
        raise AssetError(f"{spec!r} names a world asset, but the pool {pool_root} is not inside a world "
                         "(no manifest.json with a models table above it); give a path instead")
    return root, spec[len(WORLD_PREFIX):]


def resolve_model(arch: str, checkpoint: str | None, pool_root=None) -> ModelRef:
    """``arch`` = ``world:<role>`` (architecture and checkpoint from the world) or an open_clip config name;
    ``checkpoint`` = None or "" (random init), ``world:<role>`` or a file path."""
    if arch.startswith(WORLD_PREFIX):
        root, role = _world(arch, pool_root)
        entry = _world_model(root, role, arch)
        return ModelRef(entry["name"], root / entry["file"], arch)
    if not checkpoint:
        return ModelRef(arch, None, arch)
    if checkpoint.startswith(WORLD_PREFIX):
        root, role = _world(checkpoint, pool_root)
        return ModelRef(arch, root / _world_model(root, role, checkpoint)["file"], checkpoint)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise AssetError(f"checkpoint {checkpoint!r} for model {arch!r}: no such file")
    return ModelRef(arch, path, checkpoint)


def _world_model(root: Path, role: str, spec: str) -> dict:
    models = json.loads((root / "manifest.json").read_text())["models"]
    if role not in models:
        raise AssetError(f"{spec!r}: the world at {root} has no model {role!r} (it has {sorted(models)})")
    return models[role]


def resolve_labelled(spec: str, pool_root=None, split: str = "train") -> LabelledSet:
    """A labelled set (eval layout with a ``split`` split) from ``world:<name>`` or a folder."""
    folder = _data_folder(spec, pool_root)
    names = _lines(folder / "classnames.txt", spec)
    templates = _lines(folder / "zeroshot_classification_templates.txt", spec)
    bad = [t for t in templates if "{c}" not in t]
    if bad:
        raise AssetError(f"{folder}/zeroshot_classification_templates.txt: template without {{c}}: {bad[0]!r}")
    labelled = LabelledSet(folder, split, tuple(names), tuple(templates))
    if not labelled.tars:
        raise AssetError(f"labelled set {spec!r}: no {split}/*.tar under {folder}")
    return labelled


def resolve_pairs(spec: str, pool_root=None) -> Path:
    """A paired image-text set in the pool layout (``metadata/``, ``shards/``) from ``world:<name>`` or a folder."""
    folder = _data_folder(spec, pool_root)
    if not (folder / "metadata").is_dir():
        raise AssetError(f"paired set {spec!r}: {folder} is not in the pool layout (no metadata/ inside)")
    return folder


def _data_folder(spec: str, pool_root) -> Path:
    if spec.startswith(WORLD_PREFIX):
        root, name = _world(spec, pool_root)
        folder = root / "aux" / name
    else:
        folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise AssetError(f"data set {spec!r}: no folder {folder}")
    return folder


def _lines(path: Path, spec: str) -> list[str]:
    if not path.is_file():
        raise AssetError(f"labelled set {spec!r}: missing {path}")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise AssetError(f"{path}: empty")
    return lines


# -- loading ----------------------------------------------------------------------------------------------
class _QuietRandomInit(logging.Filter):
    """open_clip warns "No pretrained weights loaded" for every config without a pretrained tag; a model we
    then load a checkpoint into, or train from scratch on purpose, is expected to start that way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def register_model_configs() -> None:
    """Add the harness's own configs (the CPU scales' students) and every config folder that plugins register
    (``register_model_configs`` hook) to open_clip's registry, once per process."""
    import open_clip

    from filterbench.harness.manager import get_plugins
    from filterbench.harness.training.models import MODEL_CONFIG_DIR

    for folder in [MODEL_CONFIG_DIR.resolve(), *get_plugins().model_config_dirs()]:
        if folder not in _REGISTERED:
            open_clip.add_model_config(folder)
            _REGISTERED.add(folder)


_REGISTERED: set[Path] = set()


def load_model(ref: ModelRef, device: str = "cpu"):
    """(model, train preprocess, eval preprocess, tokenizer) through open_clip, checkpoint loaded if any."""
    import open_clip

    register_model_configs()
    quiet = _QuietRandomInit()
    logging.getLogger().addFilter(quiet)
    try:
        model, train_pre, eval_pre = open_clip.create_model_and_transforms(
            ref.arch, pretrained=str(ref.checkpoint) if ref.checkpoint else None, device=device)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "unknown model" in str(exc).lower():
            raise AssetError(f"open_clip knows no model {ref.arch!r} ({exc})") from None
        raise AssetError(f"{ref.checkpoint}: cannot load into {ref.arch!r} ({exc})") from None
    except Exception as exc:  # a truncated or foreign file fails inside torch.load with anything
        if ref.checkpoint is None:
            raise
        raise AssetError(f"{ref.checkpoint}: cannot load into {ref.arch!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        logging.getLogger().removeFilter(quiet)
    return model, train_pre, eval_pre, open_clip.get_tokenizer(ref.arch)
