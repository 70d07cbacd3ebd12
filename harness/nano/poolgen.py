"""Writing the nano pool in DataComp's layout, plus the oracle.

::

    pool/metadata/<32-hex>.parquet   uid, url, text, original_width, original_height,
                                     clip_b32_similarity_score, clip_l14_similarity_score, sha256
    pool/metadata/<32-hex>.npz       b32_img, b32_txt, l14_img, l14_txt (unit-norm fp16), dino_img (nano extra)
    pool/shards/NNNNNNNN.tar         img2dataset layout: <12-digit key>.jpg/.txt/.json, + NNNNNNNN_stats.json
    oracle/<same stem>.parquet       uid + ground truth, row-aligned with the metadata parquet

Images are 32 px JPEGs (quality 95, img2dataset's default); ``original_width/height`` describe the image "as
found on the web" so that size and aspect filters have something to do: most are ordinary photos, low-information
images are often tiny icons or banners.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from filterbench.harness.nano.world import IMAGE_SIZE, NanoConfig
from filterbench.harness.poolwrite import write_image_tar, write_npz, write_parquet, write_tar_stats
from filterbench.harness.seeding import derive_rng

JPEG_QUALITY = 95
FEATURE_ROLES = ("b32", "l14")  # DataComp's npz feature sets; "dino" is stored as dino_img only


def encode_jpegs(images: np.ndarray) -> list[bytes]:
    """JPEG bytes per image (libjpeg is deterministic: same pixels, same bytes)."""
    from PIL import Image

    out = []
    for pixels in images:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        out.append(buffer.getvalue())
    return out


def decode_jpegs(blobs: list[bytes]) -> np.ndarray:
    """(n, 32, 32, 3) uint8 pixels as every reader of the pool will see them."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])


def original_sizes(cfg: NanoConfig, part: str, noise_type: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(width, height, small, extreme) per row: web-like sizes, with icons and banners among low-info images."""
    rng = derive_rng(cfg.seed, part, "original_size")
    n = len(noise_type)
    side = np.exp(rng.normal(np.log(640), 0.5, size=n))
    aspect = np.exp(rng.normal(0.0, 0.25, size=n))
    low = noise_type == "low_info"
    small = rng.random(n) < np.where(low, 0.5, 0.05)
    extreme = ~small & (rng.random(n) < np.where(low, 0.3, 0.03))
    side[small] = rng.uniform(16, 190, size=int(small.sum()))
    aspect[extreme] = rng.uniform(3.2, 8.0, size=int(extreme.sum())) ** rng.choice([-1, 1], size=int(extreme.sum()))
    width = np.maximum(8, np.rint(side * np.sqrt(aspect))).astype(np.int64)
    height = np.maximum(8, np.rint(side / np.sqrt(aspect))).astype(np.int64)
    small = np.minimum(width, height) < 200
    extreme = np.maximum(width, height) / np.minimum(width, height) > 3.0
    return width, height, small, extreme


def make_uids(cfg: NanoConfig, part: str, n: int) -> np.ndarray:
    """128-bit hex uids (unique; drawn from the seed, as DataComp's are hashes)."""
    raw = derive_rng(cfg.seed, part, "uids").bytes(16 * n)
    uids = np.array([raw[16 * i:16 * i + 16].hex() for i in range(n)])
    if len(np.unique(uids)) != n:
        raise RuntimeError("uid collision")  # 2^-100 odds; never silently write a broken pool
    return uids


def shard_bounds(cfg: NanoConfig, part: str, count: int, rows: int) -> list[tuple[str, int, int]]:
    """(stem, first row, end row) per metadata shard; stems are 32-hex names like DataComp's."""
    rng = derive_rng(cfg.seed, part, "stems")
    stems = sorted(rng.bytes(16).hex() for _ in range(count))
    edges = np.linspace(0, rows, count + 1).astype(int)
    return [(stem, int(edges[i]), int(edges[i + 1])) for i, stem in enumerate(stems)]


def _cosine(a16: np.ndarray, b16: np.ndarray) -> np.ndarray:
    a, b = a16.astype(np.float64), b16.astype(np.float64)
    return ((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).astype(np.float32)


def write_pool(root: Path, cfg: NanoConfig, pool: dict, jpegs: list[bytes], features: dict[str, np.ndarray]) -> None:
    """Write the pool (``root/pool``) and its oracle (``root/oracle``).

    Args:
        pool: :func:`noise.compose_pool` output plus ``uid``, ``width``, ``height`` arrays.
        jpegs: encoded image per row.
        features: ``<role>_img`` / ``<role>_txt`` unit-norm arrays per row (b32, l14) and ``dino_img``.
    """
    shards = shard_bounds(cfg, "pool", cfg.pool_parquets, cfg.pool_size)
    write_pool_layout(root / "pool", shards, pool, jpegs, features, cfg.rows_per_tar)
    for stem, lo, hi in shards:
        oracle = {"uid": pool["uid"][lo:hi].tolist(), **{k: v[lo:hi] for k, v in pool["oracle"].items()}}
        oracle["dup_of"] = [pool["uid"][s] if s >= 0 else "" for s in pool["dup_source"][lo:hi]]
        write_parquet(root / "oracle" / f"{stem}.parquet", oracle)


def write_pool_layout(folder: Path, shards: list[tuple[str, int, int]], table: dict, jpegs: list[bytes],
                      features: dict[str, np.ndarray], rows_per_tar: int) -> None:
    """metadata/<stem>.parquet + .npz and shards/NNNNNNNN.tar for rows ``table`` (uid, captions, width, height)."""
    tar_id = 0
    for stem, lo, hi in shards:
        uids = table["uid"][lo:hi]
        sidecar = {k: v[lo:hi].astype(np.float16) for k, v in features.items()}
        columns = {"uid": uids.tolist(), "url": [_url(u) for u in uids], "text": table["captions"][lo:hi],
                   "original_width": table["width"][lo:hi], "original_height": table["height"][lo:hi]}
        for role in FEATURE_ROLES:
            columns[f"clip_{role}_similarity_score"] = _cosine(sidecar[f"{role}_img"], sidecar[f"{role}_txt"])
        columns["sha256"] = [hashlib.sha256(b).hexdigest() for b in jpegs[lo:hi]]
        write_parquet(folder / "metadata" / f"{stem}.parquet", columns)
        write_npz(folder / "metadata" / f"{stem}.npz", sidecar)
        tar_id = _write_tars(folder / "shards", table, jpegs, lo, hi, tar_id, rows_per_tar)


def _url(uid: str) -> str:
    return f"https://img{int(uid[0], 16) % 4}.nano.invalid/{uid[:8]}/{uid[8:20]}.jpg"


def _write_tars(folder: Path, pool: dict, jpegs: list[bytes], lo: int, hi: int, tar_id: int,
                rows_per_tar: int) -> int:
    """img2dataset's chunking: each parquet is cut into chunks of ``rows_per_tar``; tar ids run on."""
    for start in range(lo, hi, rows_per_tar):
        samples = []
        for row in range(start, min(hi, start + rows_per_tar)):
            key = f"{tar_id:08d}{row - start:04d}"
            uid, text = str(pool["uid"][row]), pool["captions"][row]
            meta = {"uid": uid, "key": key, "caption": text, "url": _url(uid), "status": "success",
                    "error_message": None, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                    "original_width": int(pool["width"][row]), "original_height": int(pool["height"][row]),
                    "sha256": hashlib.sha256(jpegs[row]).hexdigest(), "face_bboxes": []}
            samples.append({"__key__": key, "jpg": jpegs[row], "txt": text, "json": meta})
        write_image_tar(folder / f"{tar_id:08d}.tar", samples)
        write_tar_stats(folder / f"{tar_id:08d}_stats.json", len(samples), len(samples))
        tar_id += 1
    return tar_id
