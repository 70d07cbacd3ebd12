"""Scorers ``basic_filter`` and ``text_based``: DataComp's metadata baselines as 0/1 columns.

Card
    Paper: Gadre et al. 2023, "DataComp: In search of the next generation of multimodal datasets" (§3.4,
        App. C: basic filtering, text-based filtering).
    Reference: mlfoundations/datacomp ``baselines/apply_filter.py``: ``load_uids_with_basic_filter_helper``,
        ``load_uids_with_text_entity_helper``, ``does_contain_text_entity``.
    basic_filter keeps a sample when ALL hold (DataComp's constants are the defaults):
        the caption's top-1 language is English (``language_id.match``, consumed from that scorer);
        ``len(text.split()) >= min_words`` (3: DataComp's ``> 2``), ``len(text) >= min_chars`` (6: ``> 5``);
        ``min(original_width, original_height) >= min_side`` (200) and ``max/min <= max_aspect`` (3.0), on the
        parquet's *original* sizes, not the stored <= 512 px image.
        Outputs: ``keep`` and its parts ``english``, ``caption_ok``, ``size_ok``, ``aspect_ok`` (all 1.0/0.0).
    text_based keeps a sample when its caption is English and some whitespace token names a concept:
        with a WordNet vocabulary (``n########`` ids; default ``imagenet21k``, timm's ImageNet-21k synsets),
        the token's first WordNet synset (see ``plugins/wordnet.py``) has one of the ids' offsets, exactly
        DataComp's rule (no punctuation stripping, POS ignored); with a plain word vocabulary (e.g. the nano
        world's), the token lower-cased and stripped of surrounding punctuation is one of the words.
        Outputs: ``keep``, ``english``, ``concept_hit``.  Fit: resolves the vocabulary (pool-local
        ``targets/<name>.txt`` first, so the nano world supplies its own) and keeps a copy in
        ``fit/concepts.txt`` with its source and digest in ``fit/concepts.json``.
    Params (both): ``lid_backend``/``lid_model``/``language`` (passed to ``language_id``); text_based adds
        ``concepts`` (see ``filterbench.harness.targets.resolve_concepts``).
    Recipes: ``baselines/basic_filter.yaml``, ``baselines/text_based.yaml`` (``threshold`` 0.5 on ``keep``).
    Checks: tests/plugins/test_datacomp_filters.py recomputes DataComp's rules independently on a fabricated
        pool and compares the selected uids.
    Known differences: the default language detector is py3langid, not fastText (see ``plugins/language.py``);
        timm's ImageNet-21k list may differ by a few ids from DataComp's ``imagenet21k_wordnet_ids.txt`` asset
        (point ``concepts`` at that file to use it).
    Versions: 1 - first release.
"""

from __future__ import annotations

import json
import string
from typing import Literal

import numpy as np

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, ScoreInput, StageContext
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.targets import ConceptSet, parse_concepts, resolve_concepts
from filterbench.plugins.language import captions


class _EnglishParams(Params):
    lid_backend: Literal["langid", "fasttext"] = "langid"
    lid_model: str | None = None
    language: str = "en"


class _NeedsLanguage(Scorer):
    """A scorer that consumes ``language_id``'s ``match`` column with its own language settings."""

    def required_scores(self) -> tuple[ScoreInput, ...]:
        return (ScoreInput("language_id", {"backend": self.params.lid_backend, "model": self.params.lid_model,
                                           "language": self.params.language}),)

    @staticmethod
    def english(batch: PoolBatch) -> np.ndarray:
        return batch.scores["language_id.match"] >= 0.5


class BasicFilterScorer(_NeedsLanguage):
    """DataComp's basic filter: English, caption length, image size and aspect ratio."""

    name = "basic_filter"
    version = 1
    needs = Needs(metadata=("text", "original_width", "original_height"))
    outputs = ("keep", "english", "caption_ok", "size_ok", "aspect_ok")

    class Params(_EnglishParams):
        min_words: int = 3
        min_chars: int = 6
        min_side: int = 200
        max_aspect: float = 3.0

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        p = self.params
        texts = captions(batch.metadata["text"])
        words = np.array([len(t.split()) for t in texts], dtype=np.int64)
        chars = np.array([len(t) for t in texts], dtype=np.int64)
        width = batch.metadata["original_width"].astype(np.float64)
        height = batch.metadata["original_height"].astype(np.float64)
        short, long = np.minimum(width, height), np.maximum(width, height)
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.where(short > 0, long / np.where(short > 0, short, 1.0), np.inf)
        parts = {"english": self.english(batch),
                 "caption_ok": (words >= p.min_words) & (chars >= p.min_chars),
                 "size_ok": short >= p.min_side, "aspect_ok": aspect <= p.max_aspect}
        keep = parts["english"] & parts["caption_ok"] & parts["size_ok"] & parts["aspect_ok"]
        return {name: values.astype(np.float32) for name, values in {"keep": keep, **parts}.items()}


class TextBasedScorer(_NeedsLanguage):
    """DataComp's text-based filter: English caption with a token naming a concept (ImageNet-21k synsets)."""

    name = "text_based"
    version = 1
    needs = Needs(metadata=("text",))
    outputs = ("keep", "english", "concept_hit")

    class Params(_EnglishParams):
        concepts: str = "imagenet21k"

    def fit(self, pool, ctx: StageContext) -> None:
        """Resolve the vocabulary once and keep a copy with the scores (workers read only the copy)."""
        concepts = resolve_concepts(self.params.concepts, pool_root=pool.root)
        items = [f"n{o:08d}" for o in sorted(concepts.offsets)] if concepts.kind == "wordnet" \
            else sorted(concepts.words)
        (ctx.state_dir / "concepts.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
        record = {"spec": self.params.concepts, "source": concepts.source, "kind": concepts.kind,
                  "count": len(concepts), "sha256": concepts.digest}
        (ctx.state_dir / "concepts.json").write_text(json.dumps(record, indent=1, sort_keys=True))
        ctx.stat("concepts", len(concepts))

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_loaded_from", None) != ctx.state_dir:
            text = (ctx.state_dir / "concepts.txt").read_text(encoding="utf-8")
            self._hit, self._loaded_from = _matcher(parse_concepts(text, "fitted copy")), ctx.state_dir

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        hit = np.array([any(map(self._hit, t.split())) for t in captions(batch.metadata["text"])], dtype=bool)
        english = self.english(batch)
        return {"keep": (english & hit).astype(np.float32), "english": english.astype(np.float32),
                "concept_hit": hit.astype(np.float32)}


def _matcher(concepts: ConceptSet):
    """token -> bool for a vocabulary: WordNet first-synset offsets, or plain words."""
    if concepts.kind == "wordnet":
        from filterbench.plugins.wordnet import shared_wordnet

        wordnet, offsets = shared_wordnet(), concepts.offsets
        return lambda token: wordnet.first_synset_offset(token) in offsets
    words = concepts.words
    return lambda token: token.lower().strip(string.punctuation) in words


@hookimpl
def register_scorers(register):
    register(BasicFilterScorer)
    register(TextBasedScorer)
