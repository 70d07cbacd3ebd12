"""Scorer ``language_id``: offline language identification of captions, shared by the DataComp filters.

Card
    Reference: mlfoundations/datacomp ``baselines/apply_filter.py``: ``get_fasttext_language`` (fastText
        ``lid.176.bin``, newlines replaced by spaces, top-1 label) for the basic, text-based and image-based
        filters; ``get_gcld3_language`` (gcld3) for the LAION-2B reproduction.
    Backends (param ``backend``):
        ``langid`` (default): py3langid, whose model ships inside the package, so it runs offline anywhere.
            Not DataComp's detector: selections differ from DataComp's on some captions.
        ``fasttext``: fastText's ``lid.176`` model as DataComp uses it; the model file is not shipped:
            ``model`` names it (default ``lid.176.bin``), looked up as a path, then in
            ``$FILTERBENCH_FASTTEXT_DIR`` and ``~/.cache/fasttext`` (DataComp's cache).  Needs the
            ``fasttext`` module (``fasttext-predict`` or ``fasttext-wheel``).
        DataComp's LAION-2B detector, gcld3, is not offered: PyPI has no wheel of it for Python 3.11 and it
        builds only with a protobuf toolchain; the LAION-2B recipe uses the configured backend instead.
    Params: ``backend``, ``model`` (the fastText model file; for ``langid`` an optional py3langid model file,
        default the bundled one), ``language`` (ISO code, ``en``).
    Outputs: ``match`` (1.0 when the top-1 language is ``language``, DataComp's rule), ``prob`` (the
        detector's probability for ``language``; fastText reports it only among its top 5 labels, else 0).
    Also here: :func:`fasttext_token_count`, fastText's tokenizer (DataComp's image-based caption filter
        counts ``fasttext.tokenize`` tokens), reimplemented so it needs no fastText install.
    Checks: tests/plugins/test_datacomp_filters.py (known captions, fastText wiring on a stand-in model).
    Versions: 1 - first release.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, StageContext
from filterbench.harness.errors import ParamsError
from filterbench.harness.hookspecs import hookimpl

FASTTEXT_TOP_K = 5
# fastText splits on these bytes, and turns every newline into an end-of-sentence token "</s>"
_FASTTEXT_SPACE = re.compile(r"[ \n\r\t\v\f\x00]+")


def fasttext_token_count(text: str) -> int:
    """``len(fasttext.tokenize(text))``: runs of non-space characters plus one ``</s>`` per newline."""
    return sum(1 for piece in _FASTTEXT_SPACE.split(text) if piece) + text.count("\n")


def captions(values: np.ndarray) -> list[str]:
    """Caption column as Python strings (a null caption becomes the empty string)."""
    return ["" if v is None else str(v) for v in values]


class _LangId:
    """py3langid with normalised probabilities; the model ships inside the package."""

    def __init__(self, model: str | None = None) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(model or MODEL_FILE, norm_probs=True)

    def detect(self, texts: list[str], language: str) -> tuple[list[str], np.ndarray]:
        top, prob = [], np.zeros(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            ranking = self.identifier.rank(text)
            top.append(ranking[0][0])
            prob[i] = dict(ranking).get(language, 0.0)
        return top, prob


class _FastText:
    """fastText ``lid.176`` used as DataComp uses it: newlines replaced by spaces, top-1 label."""

    def __init__(self, model: str) -> None:
        try:
            import fasttext
        except ImportError as exc:
            raise ParamsError("language_id backend 'fasttext' needs the fasttext module "
                              "(pip install fasttext-predict)") from exc
        self.model = fasttext.load_model(str(find_fasttext_model(model)))

    def detect(self, texts: list[str], language: str) -> tuple[list[str], np.ndarray]:
        lines = [t.replace("\n", " ") + "\n" for t in texts]
        # the low-level call: fasttext 0.9.3's wrapper breaks on numpy 2 (np.array(..., copy=False))
        labels, probs = self.model.f.multilinePredict(lines, FASTTEXT_TOP_K, 0.0, "strict")
        wanted = f"__label__{language}"
        top = [row[0].replace("__label__", "") if row else "" for row in labels]
        prob = np.array([dict(zip(row, p)).get(wanted, 0.0) for row, p in zip(labels, probs)],
                        dtype=np.float64)
        return top, prob


def find_fasttext_model(model: str) -> Path:
    """A fastText model by path, or by file name in ``$FILTERBENCH_FASTTEXT_DIR`` / ``~/.cache/fasttext``."""
    direct = Path(model).expanduser()
    if direct.is_file():
        return direct
    dirs = [os.environ.get("FILTERBENCH_FASTTEXT_DIR", ""), "~/.cache/fasttext"]
    for folder in filter(None, dirs):
        candidate = Path(folder).expanduser() / model
        if candidate.is_file():
            return candidate
    raise ParamsError(f"fastText model {model!r} not found (as a path, in $FILTERBENCH_FASTTEXT_DIR or "
                      "~/.cache/fasttext); DataComp uses lid.176.bin from fastText's language-id page")


_DETECTORS: dict[tuple[str, str], object] = {}


def get_detector(backend: str, model: str | None):
    """One detector per (backend, model) per process: loading py3langid's model alone takes ~1.5 s."""
    key = (backend, model or "")
    if key not in _DETECTORS:
        _DETECTORS[key] = _LangId(model) if backend == "langid" else _FastText(model or "lid.176.bin")
    return _DETECTORS[key]


class LanguageIdParams(Params):
    """Language-identification settings, shared by every scorer that filters on language."""

    backend: Literal["langid", "fasttext"] = "langid"
    model: str | None = None
    language: str = "en"


class LanguageIdScorer(Scorer):
    """Top-1 language of each caption (1.0 when it is ``language``) and the probability of ``language``."""

    name = "language_id"
    version = 1
    needs = Needs(metadata=("text",))
    outputs = ("match", "prob")
    batch_rows = 8192

    Params = LanguageIdParams

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        detector = get_detector(self.params.backend, self.params.model)
        top, prob = detector.detect(captions(batch.metadata["text"]), self.params.language)
        match = np.array([label == self.params.language for label in top], dtype=np.float32)
        return {"match": match, "prob": prob.astype(np.float32)}


@hookimpl
def register_scorers(register):
    register(LanguageIdScorer)
