"""Soft-cap and hard-cap sampling as an exponential race (pure numpy; the math behind ``cap_sampling``).

The sequential processes draw ``n`` times from ``softmax(s - alpha*c)`` (soft cap: each draw of item i lowers
its logit by ``alpha``) or from ``softmax(s)`` over items with ``c < cap`` (hard cap), ``c`` being the running
counts.  Both are a race of independent per-item clocks (FLYT brief, section 8): item i fires for the (k+1)-th
time at rate ``lambda_i(k) = exp(s_i - alpha*k) * [k < cap]``, so its j-th firing time is
``T_ij = sum_{k<j} E_ik / lambda_i(k)`` with ``E_ik ~ Exp(1)``.  The first ``n`` firings overall have the law
of the sequential draws, and the counts are ``c_i = #{j : T_ij <= tau*}``, ``tau*`` being the n-th firing
time.

Design choices (why):
  * ``E_ik`` is a counter-based variate, a pure function of (key, item, k) (SplitMix64 of the counter
    ``k << 32 | item``).  The realisation is fixed by the key alone: extending a short horizon, restarting
    from scratch, chunking or blocking never change a single event time, so the counts depend only on
    (key, scores, n, law), never on the horizon guesses or the tuning knobs.
  * Event times are float64 sums accumulated strictly left to right, so blocked and one-at-a-time updates give
    the same bits.  Rates are taken relative to the top score (``s - max s``), so they are <= 1.
  * Memory: 12 bytes per item (next firing time, count) plus the firings of one narrow time window around
    ``tau*``; the window comes from an exact race on a small stratified subsample of the pool.

Scores are log-weights at temperature 1: adding a constant changes nothing, scaling does.  Non-finite scores
(NaN, -inf) are never drawn; +inf is rejected.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64 increment (odd, so key + counter*gamma is a bijection)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # bit pattern of the double 1.0
_MAX_TIME = 1e300  # beyond this, float64 event times can no longer resolve the race
_OVERFLOW = "event times overflow float64: the scores span too many nats for this budget"


@dataclass(frozen=True)
class Law:
    """Count-dependent firing rates ``exp(s_i - alpha*k) * [k < cap]`` (``cap=None``: no cap)."""

    alpha: float = 0.0
    cap: int | None = None


def soft_cap_law(alpha: float) -> Law:
    """Soft cap with repetition penalty ``alpha``; ``alpha = inf`` is drawing without replacement."""
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0 (got {alpha})")
    return Law(0.0, 1) if math.isinf(alpha) else Law(float(alpha), None)


def hard_cap_law(cap: int) -> Law:
    """Hard cap: sample from softmax(s) restricted to items drawn fewer than ``cap`` times."""
    if int(cap) < 1:
        raise ValueError(f"cap must be >= 1 (got {cap})")
    return Law(0.0, int(cap))


@dataclass(frozen=True)
class Tuning:
    """Knobs that change speed and memory, never the result.

    Attributes:
        chunk: items per chunk of a pass over the pool (bounds the temporaries).
        block: elements per blocked update (active clocks x firings advanced at once).
        sub_items: pools larger than this are calibrated on a strided subsample of this many items.
        heavy_items: about this many top-scoring items join the subsample with weight 1 (heavy tails).
        delta_min: smallest half-width of the calibration window, relative to n.
        z: half-width in standard errors of the subsample's firing count.
        threads: worker threads over chunks (numpy releases the GIL inside its loops).
    """

    chunk: int = 1 << 18
    block: int = 1 << 18
    sub_items: int = 1 << 18
    heavy_items: int = 1 << 14
    delta_min: float = 0.005
    z: float = 6.0
    threads: int = 1


def derive_key(rng: np.random.Generator) -> np.uint64:
    """The 64-bit key of the variates ``E_ik``: the only draw the exact sampler takes from ``rng``."""
    return np.uint64(rng.integers(0, 2**64, dtype=np.uint64))


def _u64(a: np.ndarray) -> np.ndarray:
    """Non-negative integers as uint64 (a free view for int64 input)."""
    a = np.asarray(a)
    return a.view(np.uint64) if a.dtype == np.int64 else a.astype(np.uint64)


def exponentials(key: np.uint64, item: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Exp(1) variates ``E[item, k]`` (broadcast): SplitMix64 output at counter ``k << 32 | item``."""
    z = np.bitwise_or(np.left_shift(_u64(k), np.uint64(32)), _u64(item))
    z *= _GAMMA
    z += key
    tmp = np.empty_like(z)
    for shift, mult in ((30, _MIX1), (27, _MIX2), (31, None)):
        np.right_shift(z, np.uint64(shift), out=tmp)
        np.bitwise_xor(z, tmp, out=z)
        if mult is not None:
            z *= mult
    # 52 random bits as a double u in [1, 2); u - (1 - 2^-53) is exact and lies in [2^-53, 1 - 2^-53], so the
    # variate -log(.) is finite and > 0 (a zero wait times an infinite 1/rate would be NaN)
    z >>= np.uint64(12)
    z |= _ONE_BITS
    u = z.view(np.float64)
    u -= 1.0 - 2.0**-53
    np.log(u, out=u)
    return np.negative(u, out=u)


def increments(key: np.uint64, law: Law, item: np.ndarray, k: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Waiting times ``E_ik / lambda_i(k)`` from firing k to firing k+1 (broadcast over item, k, sp).

    ``sp`` is the score minus the pool's top score (float64, -inf for items never drawn); a zero rate gives an
    infinite wait.  Every event time is a left-to-right sum of these.
    """
    e = exponentials(key, item, k)
    with np.errstate(over="ignore"):
        x = np.subtract(np.multiply(k, law.alpha), sp) if law.alpha else np.negative(sp)
        e *= np.exp(x, out=x) if x.shape == e.shape else np.exp(x)
    if law.cap is not None:
        e[np.broadcast_to(np.asarray(k) >= law.cap, e.shape)] = np.inf
    return e


class _Items:
    """Race clocks for some items: count and next firing time of each.

    ``ids`` is an int offset (a contiguous slice of the pool) or an array of global ids; ``cnt`` and ``nxt``
    may be views of the pool's arrays.
    """

    def __init__(self, key, law, scores, top, ids, size, block, cnt=None, nxt=None):
        self.key, self.law, self.scores, self.top, self.ids, self.block = key, law, scores, top, ids, block
        self.cnt = np.zeros(size, dtype=np.uint32) if cnt is None else cnt
        self.nxt = np.empty(size) if nxt is None else nxt

    def gid(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Global ids of local indices (``None``: of all items)."""
        if isinstance(self.ids, int):
            return np.arange(self.ids, self.ids + len(self.nxt)) if idx is None else idx + self.ids
        return self.ids if idx is None else self.ids[idx]

    def shifted(self, idx: np.ndarray | None = None) -> np.ndarray:
        """float64 ``score - top`` of local indices (``None``: of all items); NaN becomes -inf."""
        if idx is None and isinstance(self.ids, int):
            part = self.scores[self.ids:self.ids + len(self.nxt)]
        else:
            part = self.scores[self.gid(idx)]
        sp = part.astype(np.float64)
        sp -= self.top
        return np.fmax(sp, -np.inf, out=sp)  # fmax drops NaN

    def start(self) -> None:
        """Set every clock to its first firing time."""
        self.cnt[:] = 0
        self.nxt[:] = increments(self.key, self.law, self.gid(), np.zeros(1, np.uint64), self.shifted())

    def advance(self, horizon: float, record: bool) -> tuple[int, list]:
        """Fire every clock up to ``horizon``.

        Returns:
            The number of firings, and (if ``record``) a list of (times, local indices) arrays of them.
        """
        act = np.flatnonzero(self.nxt <= horizon)
        sp, c, t = self.shifted(act), self.cnt[act].astype(np.int64), self.nxt[act]
        fired, events, b, rounds = 0, [], 1, 0
        while act.size:
            if b == 1:  # every active clock fires once: the common case, kept one-dimensional
                if record:
                    events.append((t, act))
                fired += act.size
                c = c + 1
                t = t + increments(self.key, self.law, self.gid(act), c, sp)
            else:
                m, t = self._block(act, sp, c, t, horizon, b, events if record else None)
                fired += int(m.sum())
                c = c + m
            over = t > horizon
            done, keep = np.flatnonzero(over), np.flatnonzero(~over)
            finished = act[done]
            self.cnt[finished], self.nxt[finished] = c[done], t[done]
            act, sp, c, t = act[keep], sp[keep], c[keep], t[keep]
            # most clocks fire once or twice; blocks grow (doubling) only for the few that keep firing
            rounds += 1
            b = 1 if rounds < 2 else max(1, min(2 * b, self.block // max(act.size, 1)))
        return fired, events

    def _block(self, act, sp, c, t, horizon, b, events):
        """Advance each clock by up to ``b`` firings at once; return how many fired and the next times."""
        times = np.empty((len(t), b + 1))
        times[:, 0] = t
        ks = c[:, None] + np.arange(1, b + 1)
        times[:, 1:] = increments(self.key, self.law, self.gid(act)[:, None], ks, sp[:, None])
        with np.errstate(over="ignore"):  # cumsum adds left to right: same bits as one firing at a time
            np.cumsum(times, axis=1, out=times)
        # times grow along a row, so the firings within the horizon are a prefix; its length m is the first
        # column past the horizon (the last column counts as past it)
        late = times > horizon
        late[:, b] = True
        m = np.argmax(late, axis=1)
        if events is not None:
            events.append((times[:, :b][~late[:, :b]], np.repeat(act, m)))
        return m, times[np.arange(len(t)), m]


def _concat(events: list) -> tuple[np.ndarray, np.ndarray]:
    """(times, ids) pairs joined into two arrays."""
    times = np.concatenate([np.empty(0)] + [e[0] for e in events])
    return times, np.concatenate([np.empty(0, np.int64)] + [e[1] for e in events])


def _scan(scores: np.ndarray) -> tuple[float, int]:
    """The top finite score and the number of finite scores; +inf is an error."""
    top, finite = -np.inf, 0
    for a in range(0, len(scores), 1 << 22):
        part = scores[a:a + (1 << 22)]
        peak = float(np.fmax.reduce(part))  # fmax skips NaN
        if peak == np.inf:
            raise ValueError("a score is +inf; scores are log-weights (NaN and -inf are never drawn)")
        top = max(top, peak)
        finite += int(np.count_nonzero(np.isfinite(part)))
    return top, finite


def check_budget(n: int, law: Law, finite: int, size: int) -> None:
    """Reject budgets the law cannot fill: no drawable item, or n above cap x (number of drawable items)."""
    if n < 0:
        raise ValueError(f"budget must be >= 0 (got {n})")
    if n and not finite:
        raise ValueError(f"no drawable item: all {size} scores are NaN or -inf")
    if law.cap is not None and n > law.cap * finite:
        raise ValueError(f"budget {n} exceeds cap {law.cap} x {finite} drawable items = {law.cap * finite}")


def _search(items: _Items, weights, n_lo: float, n_hi: float, h0: float, step: float):
    """Grow the horizon until the (weighted) firing count reaches ``n_hi`` or every clock is spent.

    Returns:
        (h_snap, w_snap, h_end, times, local ids): the last horizon whose count was below ``n_lo``, that
        count, the final horizon, and the firings in (h_snap, h_end].  ``items`` is left at ``h_end``.
    """
    items.start()
    snap, h, step = (0.0, 0.0, items.cnt.copy(), items.nxt.copy()), h0, max(step, 0.01)
    while True:
        items.advance(h, record=False)
        w = float(items.cnt.sum(dtype=np.int64) if weights is None else items.cnt @ weights)
        if w < n_lo:
            snap = (h, w, items.cnt.copy(), items.nxt.copy())
        if w >= n_hi or np.isinf(items.nxt).all():
            break
        # Newton-like step from below: the expected count is concave in the horizon
        h *= min(16.0, max(1.0 + step, (n_hi / w if w > 0 else 16.0) * (1.0 + step)))
        if not h < _MAX_TIME:
            raise ValueError(_OVERFLOW)
    h_snap, w_snap, items.cnt[:], items.nxt[:] = snap
    return (h_snap, w_snap, h, *_concat(items.advance(h, record=True)[1]))


def _start_horizon(items: _Items, weights, target: float) -> float:
    """Horizon at which the uncapped, unpenalised race expects ``target`` firings, shrunk to start below."""
    rate = np.exp(items.shifted())
    return 0.8 * max(target, 1.0) / float(rate.sum() if weights is None else rate @ weights)


def _reject_late(cnt: np.ndarray, times: np.ndarray, ids: np.ndarray, need: int) -> None:
    """Keep the ``need`` earliest of the window's firings: undo the later ones in ``cnt``."""
    if need >= len(times):
        return
    late = ids[np.argpartition(times, need)[need:]]
    uniq, k = np.unique(late, return_counts=True)
    cnt[uniq] -= k.astype(np.uint32)


def _exact_small(scores, top, n, law, key, tuning, stats) -> np.ndarray:
    """A small pool: the horizon search itself runs the exact race and yields the counts."""
    items = _Items(key, law, scores, top, 0, len(scores), tuning.block)
    _, w_snap, _, times, local = _search(items, None, n, n, _start_horizon(items, None, n), 0.01)
    need = n - int(w_snap)
    if need > len(times):
        raise ValueError(_OVERFLOW)
    _reject_late(items.cnt, times, local, need)
    stats.update(path="exact_small", window=len(times))
    return items.cnt


def _subsample(scores: np.ndarray, tuning: Tuning) -> tuple[np.ndarray, np.ndarray, int]:
    """Stratified subsample: top-scoring items (weight 1) plus a strided grid of the rest.

    Returns:
        (global ids, weights, size of the grid part).
    """
    size = len(scores)
    grid = np.arange(tuning.sub_items, dtype=np.int64) * size // tuning.sub_items
    vals = scores[grid]
    finite = vals[np.isfinite(vals)]
    heavy, light = np.empty(0, np.int64), grid
    if tuning.heavy_items / size * len(finite) >= 8:  # enough grid points above the quantile to place it
        thr = float(np.quantile(finite, 1.0 - tuning.heavy_items / size))
        heavy = np.flatnonzero(scores > thr)
        if len(heavy) > 4 * tuning.heavy_items:  # ties at the threshold: no heavy stratum
            heavy = np.empty(0, np.int64)
        else:
            light = grid[~(vals > thr)]
    weights = np.r_[np.ones(len(heavy)), np.full(len(light), (size - len(heavy)) / len(light))]
    return np.r_[heavy, light], weights, len(light)


def _calibrate(scores, top, n, law, key, tuning) -> tuple[float, float, float, int]:
    """A time window [lo, hi] whose firing count should bracket n, from an exact race on a subsample."""
    ids, weights, light = _subsample(scores, tuning)
    items = _Items(key, law, scores, top, ids, len(ids), tuning.block)
    # the light stratum's expected firings set the noise of the estimate
    delta = max(tuning.delta_min, tuning.z / math.sqrt(max(1.0, n * light / len(scores))))
    n_lo, n_hi = n * (1 - delta), n * (1 + delta)
    h0 = _start_horizon(items, weights, n_lo if n_lo > 0 else n)
    h_snap, w_snap, h_end, times, local = _search(items, weights, n_lo, n_hi, h0, delta)
    order = np.argsort(times, kind="stable")
    cum, sorted_times = w_snap + np.cumsum(weights[local[order]]), times[order]

    def time_at(target: float, default: float) -> float:
        j = np.searchsorted(cum, target)
        return float(sorted_times[j]) if target > w_snap and j < len(cum) else default

    return time_at(n_lo, h_snap), time_at(n_hi, h_end), delta, len(ids) - light


class _Pool:
    """The race over the whole pool, in chunks of ``tuning.chunk`` items (optionally on threads)."""

    def __init__(self, scores, top, law, key, tuning, executor=None):
        size, step, self.executor = len(scores), tuning.chunk, executor
        self.cnt, self.nxt = np.zeros(size, dtype=np.uint32), np.empty(size)
        self.chunks = [_Items(key, law, scores, top, a, min(step, size - a), tuning.block,
                              self.cnt[a:a + step], self.nxt[a:a + step]) for a in range(0, size, step)]

    def restart(self, horizon: float) -> int:
        """Reset every clock and run the race to ``horizon`` without recording; return the firing count."""

        def run(items: _Items) -> int:
            items.start()
            return items.advance(horizon, record=False)[0]

        return sum(self._map(run))

    def extend(self, horizon: float) -> tuple[int, np.ndarray, np.ndarray]:
        """Continue the race to ``horizon``; return the new firings' count, times and global ids."""

        def run(items: _Items):
            fired, events = items.advance(horizon, record=True)
            return fired, [(t, items.gid(local)) for t, local in events]

        results = list(self._map(run))
        return sum(r[0] for r in results), *_concat([e for r in results for e in r[1]])

    def _map(self, fn):
        """Apply ``fn`` to every chunk, in chunk order; chunks own disjoint slices, so threads are safe."""
        return map(fn, self.chunks) if self.executor is None else self.executor.map(fn, self.chunks)


def _run_window(pool: _Pool, n: int, lo: float, hi: float, delta: float):
    """Race the pool to ``lo`` silently, then record firings up to ``hi``, extended until n are reached."""
    total_lo, restarts = pool.restart(lo), 0
    if total_lo > n:  # the subsample misjudged lo: the same realisation from scratch, recording everything
        restarts, lo, hi = 1, 0.0, lo
        total_lo = pool.restart(0.0)
    total, events, growth, extensions = total_lo, [], 1.0 + max(2 * delta, 0.01), 0
    while True:
        fired, times, ids = pool.extend(hi)
        total += fired
        events.append((times, ids))
        if total >= n:
            break
        hi, growth, extensions = hi * growth, growth * growth, extensions + 1
        if not hi < _MAX_TIME:
            raise ValueError(_OVERFLOW)
    info = {"lo": lo, "hi": hi, "total_lo": total_lo, "restarts": restarts, "extensions": extensions}
    return info, _concat(events)


def _pool_race(scores, top, n, law, key, tuning, stats) -> np.ndarray:
    """Run the pool to the calibrated ``lo``, record firings up to ``hi`` (extended if short), keep n."""
    lo, hi, delta, heavy = _calibrate(scores, top, n, law, key, tuning)
    with ThreadPoolExecutor(tuning.threads) if tuning.threads > 1 else contextlib.nullcontext() as executor:
        pool = _Pool(scores, top, law, key, tuning, executor)
        info, (times, ids) = _run_window(pool, n, lo, hi, delta)
    _reject_late(pool.cnt, times, ids, n - info["total_lo"])
    stats.update(path="pool", delta=delta, heavy=heavy, window=len(times), **info)
    return pool.cnt


def race_counts(scores: np.ndarray, n: int, law: Law, rng: np.random.Generator, tuning: Tuning = Tuning(),
                stats: dict | None = None) -> np.ndarray:
    """Exact counts of ``n`` sequential draws under ``law`` (soft or hard cap), by the exponential race.

    Args:
        scores: log-weights, one per item (any float dtype); NaN and -inf are never drawn.
        n: number of draws.
        law: :func:`soft_cap_law` or :func:`hard_cap_law`.
        rng: source of the 64-bit key (:func:`derive_key`); the counts are a function of that key.
        tuning: speed/memory knobs; they never change the result.
        stats: if given, filled with diagnostics (path taken, window size, restarts, extensions).

    Returns:
        uint32 counts of shape ``scores.shape`` summing to ``n``.

    Raises:
        ValueError: +inf scores, no drawable item, ``n > cap x drawable items``, or a score range too wide for
            float64 event times.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1 or scores.dtype.kind != "f":
        raise ValueError(f"scores must be a 1-D float array (got {scores.dtype} of shape {scores.shape})")
    top, finite = _scan(scores)
    check_budget(n, law, finite, len(scores))
    stats = {} if stats is None else stats
    if n == 0 or (law.cap is not None and n == law.cap * finite):
        stats.update(path="trivial")  # nothing to draw, or every drawable item is drawn to its cap
        return (np.isfinite(scores) * (law.cap or 0)).astype(np.uint32)
    key = derive_key(rng)
    if len(scores) <= tuning.sub_items:
        return _exact_small(scores, top, n, law, key, tuning, stats)
    return _pool_race(scores, top, n, law, key, tuning, stats)
