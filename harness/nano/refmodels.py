"""Reference models: registration, loading and embedding (training is in :mod:`reftrain`).

Roles (the model names are open_clip configs in ``model_configs/``):

- ``b32`` (``nano-ref-b32``): the smaller CLIP, in the role of OpenAI ViT-B/32.
- ``l14`` (``nano-ref-l14``): the larger CLIP, in the role of OpenAI ViT-L/14 (finer patches, wider).
- ``dino`` (``nano-ref-dino``): an image-only embedding in the role of DINOv2: a small convolutional tower
  (open_clip's ModifiedResNet, width 16) trained on images alone, with an InfoNCE between two augmented views of
  each image and a heavier object-class head (see :mod:`reftrain`); the text tower of the checkpoint is left at
  its initialisation and must not be used.

Checkpoints are ``{"state_dict": ...}`` files, so ``open_clip.create_model_and_transforms(name,
pretrained=path)`` loads them once :func:`register_models` has added the configs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's default preprocessing for these configs
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=1)
def register_models() -> None:
    """Add the nano model configs to open_clip's registry (idempotent, per process)."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)


def to_tensor(images: np.ndarray):
    """uint8 (n, 32, 32, 3) -> normalised float tensor, exactly what open_clip's eval preprocess gives 32 px
    images (its resize and centre crop are identities at this size; tests check the equality)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_reference(name: str, path: Path):
    """(model in eval mode, eval preprocess, tokenizer) for a saved checkpoint, through open_clip's loader."""
    import open_clip

    register_models()
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def embed_images(model, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Unit-norm float32 image embeddings of uint8 images."""
    import torch

    torch.set_num_threads(1)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            feats = model.encode_image(to_tensor(images[start:start + batch]))
            chunks.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
    return np.concatenate(chunks).astype(np.float32)


def embed_texts(model, tokenizer, texts: list[str], batch: int = 1024) -> np.ndarray:
    """Unit-norm float32 text embeddings."""
    import torch

    torch.set_num_threads(1)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            feats = model.encode_text(tokenizer(list(texts[start:start + batch])))
            chunks.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
    return np.concatenate(chunks).astype(np.float32)
