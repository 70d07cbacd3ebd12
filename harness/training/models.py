"""The tiny open_clip model configs of the CPU scales, registered with open_clip's model registry.

``filterbench-nano-rn16`` is the model of the ``nano`` scale: open_clip's ModifiedResNet (CLIP's RN family),
layers [1, 1, 1, 1], width 16, with ``filterbench-nano-vit2``'s text tower; it learns the nano objects two to
three times faster than the ViT (docs/nano.md section 9.3).
``filterbench-nano-vit2`` is the model of the ``nano-xs`` scale (and was the ``nano`` scale's until 2026-11-22): a
vision tower of 32 px images, 8 px patches so 16 image tokens, 4 layers of width 128, with a text tower of 2
layers of width 64 (the standard 49,408-token BPE vocabulary, context 20; 4.1 M parameters, 3.2 M of them the token
embedding), twice as fast per step as ``filterbench-nano-vit`` (text 3 x 128), the first nano model, kept so
that the archived records that name it stay reproducible.
``filterbench-micro-vit`` is ecosystem.md's 3.4 M-parameter smoke-test model; the test-suite trains it because it
is about three times faster, it is never the model of an official scale.

open_clip's registry lives in the process, so every process that builds or loads these models (the training
launcher, torchrun ranks, the evaluator) calls :func:`register_model_configs` first.  No config reaches the
network: no ``hf_tokenizer_name``, no timm tower, no pretrained tag.
"""

from __future__ import annotations

from pathlib import Path

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
MODEL_NAMES = tuple(sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")))

_registered: set[Path] = set()


def register_model_configs(*extra_dirs: str | Path) -> tuple[str, ...]:
    """Add our config folder (and ``extra_dirs``) to open_clip's registry once per process.

    Returns:
        The model names our folder provides.
    """
    import open_clip

    for folder in (MODEL_CONFIG_DIR, *map(Path, extra_dirs)):
        folder = folder.resolve()
        if folder not in _registered:
            open_clip.add_model_config(folder)
            _registered.add(folder)
    return MODEL_NAMES
