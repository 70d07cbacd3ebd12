"""faiss helpers shared by ``normsim`` and ``image_clusters``: one code path for CPU and GPU builds.

faiss-cpu and faiss-gpu install the same ``faiss`` module; a GPU build is recognised by
``hasattr(faiss, "StandardGpuResources")`` (absent from faiss-cpu) and used when it also sees a GPU.
Inner-product indexes are built on CPU (so they can be written to a score artifact's ``fit/`` folder) and
copied to every visible GPU for search.
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.errors import ParamsError


def faiss_module():
    """The ``faiss`` module, with a clear error when it is missing."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ParamsError("faiss is not installed (pip install faiss-cpu; faiss-gpu on CUDA hosts)") from exc
    return faiss


def gpu_available() -> bool:
    """True with a faiss GPU build that sees at least one GPU."""
    faiss = faiss_module()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_device(index):
    """``index`` copied to all GPUs when available (flat and IVF indexes), else unchanged."""
    faiss = faiss_module()
    if gpu_available():
        try:
            return faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError):  # HNSW and friends have no GPU version: stay on CPU
            return index
    return index


def max_inner_product(index, queries: np.ndarray, rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(best inner product, its index) for each query row, searched in chunks of ``rows``."""
    sims = np.empty(len(queries), dtype=np.float32)
    ids = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), rows):
        chunk = np.ascontiguousarray(queries[start:start + rows], dtype=np.float32)
        distances, labels = index.search(chunk, 1)
        sims[start:start + len(chunk)], ids[start:start + len(chunk)] = distances[:, 0], labels[:, 0]
    return sims, ids


def flat_ip_index(vectors: np.ndarray):
    """An exact inner-product index over ``vectors`` (float32, CPU)."""
    faiss = faiss_module()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def train_kmeans(points: np.ndarray, clusters: int, niter: int, spherical: bool, seed: int,
                 gpu: bool | None = None) -> np.ndarray:
    """faiss k-means centroids (clusters, d) trained on every given point (no internal subsampling).

    ``spherical`` normalises the points first and keeps unit-norm centroids (faiss's spherical mode does not
    normalise inputs itself).  ``gpu`` None follows :func:`gpu_available`; False forces the CPU on a GPU host.
    """
    faiss = faiss_module()
    points = np.ascontiguousarray(points, dtype=np.float32)
    if spherical:
        faiss.normalize_L2(points)
    kmeans = faiss.Kmeans(points.shape[1], clusters, niter=niter, seed=seed, spherical=spherical,
                          max_points_per_centroid=max(1, len(points)), min_points_per_centroid=1,
                          gpu=gpu_available() if gpu is None else gpu)
    kmeans.train(points)
    return np.asarray(kmeans.centroids, dtype=np.float32)
