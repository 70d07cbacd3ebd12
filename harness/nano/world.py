"""The nano world's vocabulary and its two sizes.

Everything a nano item can be is listed here: object classes (pictograms, in Zipf rank order), colours, sizes,
counts, positions, backgrounds, object textures and styles, the off-distribution concepts, the noise types and
the size presets.  Changing anything in this file changes :data:`WORLD_VERSION`'s meaning: bump it, because it
enters the cache key of every built world.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

#: bump on any change that alters a built world's bytes (it enters the cache key)
WORLD_VERSION = 2
IMAGE_SIZE = 32

# In-distribution object classes, most frequent first (Zipf rank = list index).  Singular, plural.
OBJECTS: tuple[tuple[str, str], ...] = (
    ("ball", "balls"), ("house", "houses"), ("tree", "trees"), ("car", "cars"), ("star", "stars"),
    ("fish", "fish"), ("cup", "cups"), ("heart", "hearts"), ("arrow", "arrows"), ("moon", "moons"),
    ("flag", "flags"), ("mushroom", "mushrooms"), ("boat", "boats"), ("ring", "rings"), ("cross", "crosses"),
    ("umbrella", "umbrellas"), ("diamond", "diamonds"), ("bell", "bells"), ("hourglass", "hourglasses"),
    ("key", "keys"),
)
OBJECT_NAMES = tuple(name for name, _ in OBJECTS)

# Concepts that appear in the pool but that no eval task ever asks about (the NormSim / DFN / image-based case).
OFF_CONCEPTS: tuple[str, ...] = ("bar chart", "pie chart", "line graph", "barcode", "page of text", "street map")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35), "orange": (240, 135, 20), "yellow": (235, 210, 35), "green": (35, 150, 55),
    "blue": (35, 75, 205), "purple": (125, 45, 165), "pink": (240, 125, 185), "brown": (115, 70, 30),
    "black": (22, 22, 22), "white": (240, 240, 240),
}
COLOUR_NAMES = tuple(COLOURS)

SIZES = ("small", "medium", "large")
SIZE_RADIUS = ((7.5, 8.5), (10.0, 11.0), (12.5, 14.5))  # half-extent in pixels, per size
COUNTS = (1, 2, 3)
COUNT_WORDS = ("one", "two", "three")
POSITIONS = ("center", "left", "right", "top", "bottom")
# one shared frame, so that only the position word differs (and no phrase echoes a background phrase)
POSITION_PHRASES = ("at the center", "at the left", "at the right", "at the top", "at the bottom")
BACKGROUNDS = ("plain", "grass", "sand", "sky", "water", "snow", "night", "wall")
BACKGROUND_PHRASES = ("on a plain background", "on the grass", "on the sand", "in the sky", "in the water",
                      "in the snow", "at night", "by a brick wall")
# Backgrounds that only the "unusual background" shift set uses: never rendered in the pool or the aux sets.
UNUSUAL_BACKGROUNDS = ("rainbow", "checkerboard", "pastel stripes")
TEXTURES = ("solid", "striped", "dotted", "checkered")
STYLES = ("photo", "cartoon", "sketch")
#: eval-only corruption for the "noise" distribution shift (a photo under heavy pixel noise)
NOISY_STYLE = "noisy"

NOISE_TYPES = ("clean", "misaligned", "boilerplate", "low_info", "text_spotting", "parrot", "underspecified",
               "near_duplicate", "off_distribution", "non_english")

#: which family of methods each noise type is meant to challenge (docs/nano.md explains each)
NOISE_TARGETS = {
    "clean": "-",
    "misaligned": "CLIP score, NegCLIPLoss, DFN",
    "boilerplate": "CLIP score, text/caption filters",
    "low_info": "CLIP score, basic filter (size), image quality filters",
    "text_spotting": "T-MARS (text masking before re-scoring)",
    "parrot": "CLIP score's blind spot (it ranks them highest); T-MARS, target-aware filters (NormSim, image-based)",
    "underspecified": "HYPE (specificity)",
    "near_duplicate": "DynamiCS, SemDeDup, image-based clustering",
    "off_distribution": "NormSim, DFN, image-based clustering",
    "non_english": "basic filter (language)",
}


@dataclass(frozen=True)
class NoiseMix:
    """Fractions of the pool per noise type (they sum to 1)."""

    clean: float = 0.40
    misaligned: float = 0.14
    boilerplate: float = 0.07
    low_info: float = 0.04
    text_spotting: float = 0.03
    parrot: float = 0.12
    underspecified: float = 0.05
    near_duplicate: float = 0.06
    off_distribution: float = 0.05
    non_english: float = 0.04

    def counts(self, total: int) -> dict[str, int]:
        """Exact item counts per noise type (largest-remainder rounding, so they sum to ``total``)."""
        fractions = np.array([getattr(self, n) for n in NOISE_TYPES], dtype=np.float64)
        if abs(fractions.sum() - 1.0) > 1e-9:
            raise ValueError(f"noise fractions sum to {fractions.sum()}, not 1")
        raw = fractions * total
        counts = np.floor(raw).astype(np.int64)
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[: total - int(counts.sum())]] += 1
        return {n: int(c) for n, c in zip(NOISE_TYPES, counts)}


@dataclass(frozen=True)
class RefTraining:
    """How one reference model is trained (in-process, open_clip's own model and loss)."""

    model: str
    samples: int  # samples seen
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 20
    wd: float = 0.1


@dataclass(frozen=True)
class NanoConfig:
    """One size of the nano world.  Every field enters the cache key.

    Attributes:
        size: preset name (``xs`` or ``default``).
        seed: root seed; every random draw derives from it (``seeding.derive_rng``).
        pool_size: rows of the pool.
        pool_parquets: metadata shards (parquet + npz pairs).
        rows_per_tar: img2dataset chunk size (DataComp: 10,000).
        zipf: exponent of the object classes' frequency law (p(rank r) ~ 1 / (r + 1) ** zipf).
        ref_zipf: the flatter law of the reference models' independent clean sample (the curated data of a
            strong teacher); the tail stays rarer than the head but is learnable.
        ref_pool: images in that clean sample (reference models cycle over it).
        refs: training recipe per reference role (b32, l14, dino).
        eval_size: images per classification eval task; ``retrieval_size`` for the retrieval task.
        hq_size, downstream_size, labelled_size: auxiliary set sizes.
    """

    size: str
    seed: int = 0
    pool_size: int = 8_000
    pool_parquets: int = 2
    rows_per_tar: int = 10_000
    zipf: float = 1.1
    ref_zipf: float = 0.4
    noise: NoiseMix = field(default_factory=NoiseMix)
    ref_pool: int = 12_000
    refs: tuple[tuple[str, RefTraining], ...] = ()
    eval_size: int = 300
    retrieval_size: int = 300
    hq_size: int = 2_000
    downstream_size: int = 2_000
    labelled_size: int = 600

    def ref(self, role: str) -> RefTraining:
        return dict(self.refs)[role]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def ref_specs(b32: int, l14: int, dino: int) -> tuple[tuple[str, RefTraining], ...]:
    return (("b32", RefTraining("nano-ref-b32", b32)), ("l14", RefTraining("nano-ref-l14", l14)),
            ("dino", RefTraining("nano-ref-dino", dino)))


PRESETS: dict[str, NanoConfig] = {
    "xs": NanoConfig("xs", pool_size=8_000, pool_parquets=2, ref_pool=6_000, refs=ref_specs(12_000, 30_000, 40_000),
                     eval_size=400, retrieval_size=200, hq_size=600, downstream_size=600, labelled_size=200),
    "default": NanoConfig("default", pool_size=64_000, pool_parquets=4, ref_pool=30_000,
                          refs=ref_specs(64_000, 100_000, 64_000), eval_size=1_000, retrieval_size=1_000,
                          hq_size=4_000, downstream_size=4_000, labelled_size=600),
}


def get_config(size: str = "xs", **overrides) -> NanoConfig:
    """The preset ``size`` with optional field overrides (tests use small overrides)."""
    if size not in PRESETS:
        from filterbench.harness.errors import FilterbenchError

        raise FilterbenchError(f"unknown nano size {size!r} (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[size], **overrides)


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Normalised frequencies of ranks 0..n-1 under p(r) ~ 1 / (r + 1) ** exponent."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def concept_deciles(n: int = len(OBJECTS)) -> np.ndarray:
    """Frequency decile of each object class (0 = most frequent tenth of the classes, 9 = rarest)."""
    return (np.arange(n) * 10) // n


def head_tail(n: int = len(OBJECTS)) -> np.ndarray:
    """``head`` for the top 20% of classes by frequency, ``tail`` for the rarest 25%, else ``torso``."""
    ranks = np.arange(n)
    out = np.full(n, "torso", dtype=object)
    out[ranks < max(1, n // 5)] = "head"
    out[ranks >= n - max(1, n // 4)] = "tail"
    return out


def tail_classes(n: int = len(OBJECTS)) -> list[int]:
    """Class ids of the long-tail task: the rarest quarter of the classes."""
    return [int(i) for i in np.flatnonzero(head_tail(n) == "tail")]
