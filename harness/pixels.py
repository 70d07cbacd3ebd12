"""The pixel path: scorers that embed every pool image and caption with their own model (DFN, HYPE).

A :class:`PixelScorer` declares ``Needs(metadata=("text",), images=True)`` and supplies two things: the model
(:meth:`PixelScorer.load_encoder`, an open_clip model with its preprocessing and tokenizer, usually from the
fitted state) and what to compute from a batch of image and text embeddings
(:meth:`PixelScorer.score_embeddings`).  Everything between the tar shards and the model is here, once:

- the score stage hands :meth:`PixelScorer.score_batch` slices of one metadata shard whose ``images`` are
  lazy (:class:`filterbench.harness.samples.LazyImages`): image bytes are read at their offsets in the pool's
  tars (indexed once per stage, before workers fork), decoded and preprocessed model batch by model batch,
  optionally on ``decode_workers`` threads that run ahead of the model;
- captions come from the metadata parquet's ``text`` column and go through the model's tokenizer;
- the model runs on ``device`` (``auto``: CUDA when torch sees it, else CPU) in ``precision`` (``auto``: AMP
  float16 on CUDA, float32 on CPU); embeddings leave the autocast region as float32;
- rows without an image (failed downloads) are never embedded: every output column is NaN there, the stage
  checks that NaN appears nowhere else, and the count is recorded as ``missing_images``;
- per shard the scorer records ``images``, ``missing_images``, ``decode_s``, ``model_s`` and, on CUDA,
  ``gpu_s`` (``ctx.stat``); the stage sums them into the manifest (``unit_stats``, ``throughput.images_per_s``).

A shard's scores depend only on (pool, shard, the scorer's params, its fitted state): model batches are cut
from the shard's rows at fixed positions (``batch_size``), whatever the worker or thread count, so the unit
``harness/stages/score._score_shard`` can run on any engine that can call it, and a killed run resumes shard by
shard with identical bytes.  CUDA and forked workers do not mix: on a GPU run the stage with one worker
process and feed the GPU with ``decode_workers`` threads.

Keys: ``decode_workers`` and ``device`` never enter an artifact key (the manifest's provenance names the GPU);
``batch_size`` and ``precision`` enter the score key but not the fit key (:data:`SCORING_PARAMS`), so
re-scoring with another batch size never re-trains.
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Needs, Params, PoolBatch, Resources, Scorer, StageContext
from filterbench.harness.errors import PluginError

#: model batches per ``score_batch`` call: enough for the decode threads to run ahead of the model
CHUNK_BATCHES = 8
#: params that never change a score (how many threads decode; which device, recorded in the manifest's
#: provenance): left out of every key
RUNTIME_PARAMS = ("decode_workers", "device")
#: params that change how the pool is scored but never what a fit learns: left out of the fit's key
SCORING_PARAMS = ("batch_size", "precision", *RUNTIME_PARAMS)


class PixelParams(Params):
    """Params every pixel scorer has (subclass this for the plugin's own)."""

    batch_size: int = pydantic.Field(default=256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "amp", "amp_bf16"] = "auto"
    decode_workers: int = pydantic.Field(default=0, ge=0)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise PluginError("device=cuda was asked for, but torch sees no CUDA device")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``amp`` (float16 autocast) on CUDA, ``fp32`` on CPU."""
    if precision == "auto":
        return "amp" if device == "cuda" else "fp32"
    return precision


def autocast(device: str, precision: str):
    """The autocast context for a precision (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "amp" and device == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device, dtype=dtype)


@dataclass
class Encoder:
    """A model ready to embed images and captions.

    Attributes:
        model: has ``encode_image(pixels)`` and ``encode_text(tokens)`` returning one row per input.
        preprocess: PIL image -> float tensor (open_clip's eval transform).
        tokenizer: list of captions -> token tensor (open_clip's tokenizer).
        device, precision: resolved (``cpu``/``cuda``; ``fp32``/``amp``/``amp_bf16``).
    """

    model: Any
    preprocess: Callable
    tokenizer: Callable
    device: str
    precision: str

    def pixels(self, images: list) -> Any:
        """A batch tensor of preprocessed PIL images (on the CPU)."""
        import torch

        return torch.stack([self.preprocess(image) for image in images])

    def embed(self, pixels, texts: list[str]) -> tuple[Any, Any]:
        """(image embeddings, text embeddings) as float32 tensors on the device, no gradient."""
        import torch

        tokens = self.tokenizer(list(texts))
        with torch.inference_mode(), autocast(self.device, self.precision):
            image = self.model.encode_image(pixels.to(self.device, non_blocking=True))
            text = self.model.encode_text(tokens.to(self.device, non_blocking=True))
        return image.float(), text.float()


class PixelScorer(Scorer):
    """Base class of scorers that embed the pool's images and captions themselves.

    Subclasses set ``name``, ``outputs`` and a ``Params`` derived from :class:`PixelParams`, and implement
    :meth:`load_encoder` and :meth:`score_embeddings`.
    """

    needs = Needs(metadata=("text",), images=True)
    #: one model per worker; on Ray an actor pool packs two actors per GPU (micro to B/32-sized towers)
    resources = Resources(cpus=1.0, gpus=0.5)
    Params = PixelParams

    @property
    def batch_rows(self) -> int:  # one score_batch call = a few model batches, cut at fixed positions
        return self.params.batch_size * CHUNK_BATCHES

    def identity(self) -> dict[str, Any]:
        return _without(super().identity(), RUNTIME_PARAMS)

    def fit_identity(self) -> dict[str, Any]:
        return _without(super().identity(), SCORING_PARAMS)

    @abstractmethod
    def load_encoder(self, ctx: StageContext, device: str, precision: str) -> Encoder:
        """The model to score with, on ``device`` in eval mode (from ``ctx.state_dir`` or a checkpoint)."""

    @abstractmethod
    def score_embeddings(self, image, text) -> dict[str, Any]:
        """Output columns (tensors or arrays, one value per row) from row-aligned float32 embeddings."""

    # -- per worker process -----------------------------------------------------------------------------------
    def setup(self, ctx: StageContext) -> None:
        if hasattr(self, "_encoder") and self._encoder_for == ctx.state_dir:
            return
        device = resolve_device(self.params.device)
        try:
            self._encoder = self.load_encoder(ctx, device, resolve_precision(self.params.precision, device))
        except RuntimeError as exc:
            if "CUDA" in str(exc) and "fork" in str(exc):
                raise PluginError(f"scorer {self.name!r}: CUDA cannot start in a forked score worker; "
                                  "score with --workers 1 (decode_workers feeds the GPU)") from None
            raise
        self._encoder.model.eval()
        self._encoder_for = ctx.state_dir

    def encoder(self, ctx: StageContext) -> Encoder:
        self.setup(ctx)
        return self._encoder

    # -- scoring ---------------------------------------------------------------------------------------------
    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        from filterbench.harness.stages.score import has_image

        encoder = self.encoder(ctx)
        present = has_image(batch.images)
        rows = np.flatnonzero(present)
        texts = batch.metadata["text"]
        out = {c: np.full(len(batch), np.nan, dtype=np.float32) for c in self.output_columns()}
        size = self.params.batch_size
        chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
        timer = _Timer(encoder.device)
        for chunk, pixels in self._decoded(batch.images, chunks, encoder, timer):
            with timer.model(), _no_grad():
                image, text = encoder.embed(pixels, [str(t) for t in texts[chunk]])
                columns = self.score_embeddings(image, text)
            for column in self.output_columns():
                out[column][chunk] = _numpy(columns[column])
        _add(ctx, "images", len(rows))
        _add(ctx, "missing_images", len(batch) - len(rows))
        timer.record(ctx)
        return out

    def _decoded(self, images, chunks: list[np.ndarray], encoder: Encoder, timer: "_Timer"):
        """(chunk, pixel tensor) per model batch, in order; decoded on threads that run ahead when asked."""

        def decode(chunk: np.ndarray):
            start = time.perf_counter()
            pixels = encoder.pixels(_pil(images, chunk))
            return pixels, time.perf_counter() - start

        workers = self.params.decode_workers
        if workers == 0 or len(chunks) <= 1:
            results = map(decode, chunks)
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            results = pool.map(decode, chunks)
        try:
            for chunk, (pixels, seconds) in zip(chunks, results):
                timer.decode_s += seconds
                yield chunk, pixels
        finally:
            if workers and len(chunks) > 1:
                pool.shutdown(wait=True)


def _without(identity: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {**identity, "params": {k: v for k, v in identity["params"].items() if k not in names}}


def _no_grad():
    import torch

    return torch.inference_mode()


def _pil(images, positions: np.ndarray) -> list:
    """Decoded images at ``positions``: lazy images decode here; a plain list already holds PIL images."""
    if hasattr(images, "decoded"):
        return images.decoded(positions.tolist())
    return [images[int(p)] for p in positions]


def _numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def _add(ctx: StageContext, name: str, value: float) -> None:
    ctx.stats[name] = ctx.stats.get(name, 0.0) + float(value)


class _Timer:
    """Decode seconds (summed over decode calls, threads included) and model wall seconds; on CUDA the model
    time is measured to the end of the GPU work and also counts as GPU seconds."""

    def __init__(self, device: str):
        self.device, self.decode_s, self.model_s = device, 0.0, 0.0

    @contextlib.contextmanager
    def model(self):
        start = time.perf_counter()
        yield
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        self.model_s += time.perf_counter() - start

    def record(self, ctx: StageContext) -> None:
        _add(ctx, "decode_s", self.decode_s)
        _add(ctx, "model_s", self.model_s)
        if self.device == "cuda":
            _add(ctx, "gpu_s", self.model_s)
