"""A small mutation pass: deliberate bugs in the store, the keys, the uid codec, the samplers and the
aggregation, applied one at a time, each run against the tests that should catch it.

A mutant is *killed* when its tests fail (or time out) and *survives* when they pass; a survivor is either a
missing test or a change that cannot alter behaviour (docs/reliability.md says which, for every mutant).

The checkout is copied to a temporary folder (``git ls-files``: tracked and untracked, not ignored) and tested
there with ``PYTHONPATH`` pointing at the copy, so this checkout is never modified and the editable install
is bypassed.  The tests that each mutant runs first pass on the unmutated copy (``--no-baseline`` skips that).

Usage (from the repository root; not collected by pytest)::

    .venv/bin/python tools/mutation_pass.py                  # every mutant, a markdown table on stdout
    .venv/bin/python tools/mutation_pass.py --only S1 U1     # some of them
    .venv/bin/python tools/mutation_pass.py --list           # what would run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STORE_TESTS = ("tests/harness/test_store.py", "tests/harness/test_stages.py", "tests/harness/test_corruption.py",
               "tests/harness/test_fit_stage.py")
KEY_TESTS = ("tests/harness/test_keys.py", "tests/harness/test_store.py", "tests/harness/test_stages.py",
             "tests/harness/test_fit_stage.py", "tests/harness/test_pixels.py")
UID_TESTS = ("tests/harness/test_uids.py", "tests/harness/test_properties.py")
SAMPLER_TESTS = ("tests/plugins/test_basic_samplers.py", "tests/plugins/test_cap_sampling.py",
                 "tests/harness/test_properties.py", "tests/harness/test_stages.py")
BOARD_TESTS = ("tests/evaluation/test_aggregate.py", "tests/leaderboard/test_stats.py",
               "tests/leaderboard/test_analysis.py", "tests/leaderboard/test_build.py",
               "tests/leaderboard/test_schema.py", "tests/leaderboard/test_properties.py")


@dataclass(frozen=True)
class Mutant:
    """Replace ``old`` (exactly one occurrence) by ``new`` in ``path``; ``tests`` should then fail."""

    id: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTANTS = (
    # -- the artifact store ------------------------------------------------------------------------------------
    Mutant("S1", "harness/store.py", "        if verify:\n            artifact.verify()\n        return artifact",
           "        return artifact", STORE_TESTS, "Store.get skips its digest checks"),
    Mutant("S2", "harness/store.py", "        for artifact in artifacts:\n            artifact.verify()",
           "        for artifact in artifacts:\n            pass", STORE_TESTS,
           "Store.consume trusts the inputs a stage reads"),
    Mutant("S3", "harness/store.py", 'if digest != meta.get("digest"):', "if False:", STORE_TESTS,
           "verify ignores output digests"),
    Mutant("S4", "harness/store.py", "            self._verify_manifest_digest()\n", "", STORE_TESTS,
           "verify ignores the manifest digest kept in _COMPLETE"),
    Mutant("S5", "harness/store.py", "            if extra:\n", "            if False:\n", STORE_TESTS,
           "verify accepts files added after completion"),
    Mutant("S6", "harness/store.py", "if not target.is_file() or file_digest(target) != digest:",
           "if not target.is_file():", STORE_TESTS, "a unit whose file changed is trusted"),
    Mutant("S7", "harness/store.py",
           "            marker.unlink(missing_ok=True)  # damaged (torn or edited): redo the unit\n"
           "            return None",
           '            return {"unit": unit, "files": {}}', STORE_TESTS, "a damaged per-unit marker is trusted"),
    Mutant("S8", "harness/store.py", "        if previous != inputs:", "        if previous is None:", STORE_TESTS,
           "a partial folder's units are kept when its recorded inputs differ"),
    Mutant("S9", "harness/store.py", "        self._sweep()\n", "", STORE_TESTS,
           "completion keeps stray temporaries and resume bookkeeping"),
    Mutant("S10", "harness/store.py",
           "            try:\n                Artifact(self.kind, self.dir).verify()\n            except StoreError:\n"
           "                (self.dir / COMPLETE).unlink()  # not a sound completion: finish it again\n"
           "                return None\n",
           "", STORE_TESTS, "a partial folder with _COMPLETE is renamed into place unverified"),
    Mutant("S11", "harness/store.py",
           "signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)",
           "signature = (st.st_dev, st.st_ino)", STORE_TESTS, "the digest cache ignores size and times"),
    Mutant("S12", "harness/store.py", "        self._lock.acquire()\n", "", STORE_TESTS,
           "builders do not take the build lock"),
    # -- content keys ------------------------------------------------------------------------------------------
    Mutant("K1", "harness/stages/score.py", '"requires": dep_keys, "seed": seed, "batch_dependent"',
           '"requires": dep_keys, "batch_dependent"', KEY_TESTS, "the score key leaves out the seed"),
    Mutant("K2", "harness/stages/score.py", '"scorer": scorer.identity(), "pool": pool_key',
           '"scorer": {"name": scorer.name, "version": scorer.version}, "pool": pool_key', KEY_TESTS,
           "the score key leaves out the scorer's params"),
    Mutant("K3", "harness/stages/score.py", '"requires": dep_keys, "seed": seed, "batch_dependent"',
           '"requires": [], "seed": seed, "batch_dependent"', KEY_TESTS,
           "the score key leaves out the consumed scores"),
    Mutant("K4", "harness/stages/sample.py", '              "seed": seed}', "              }", KEY_TESTS,
           "the selection key leaves out the seed"),
    Mutant("K5", "harness/stages/sample.py",
           '"budget": {"samples_seen": budget.samples_seen, "segments": budget.segments, "pool_size": pool_size}',
           '"budget": {"pool_size": pool_size}', KEY_TESTS, "the selection key leaves out the budget"),
    Mutant("K6", "harness/stages/fit.py", '"requires": dep_keys, "seed": seed}', '"requires": dep_keys}', KEY_TESTS,
           "the fit key leaves out the seed"),
    Mutant("K7", "harness/hashing.py", "sort_keys=True, separators", "sort_keys=False, separators",
           ("tests/harness/test_keys.py", "tests/harness/test_store.py", "tests/harness/test_properties.py"),
           "canonical JSON keeps dict order (keys depend on insertion order)"),
    Mutant("K8", "harness/pixels.py", "        return _without(super().identity(), SCORING_PARAMS)",
           "        return super().identity()", KEY_TESTS, "scoring-only params enter the fit key"),
    # -- uid codec and subset files ----------------------------------------------------------------------------
    Mutant("U1", "harness/uids.py",
           "descending = (hi[1:] < hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] < lo[:-1]))",
           "descending = hi[1:] < hi[:-1]", UID_TESTS, "the sortedness check ignores the low 64 bits"),
    Mutant("U2", "harness/uids.py", "(lo[1:] < lo[:-1]))", "(lo[1:] <= lo[:-1]))", UID_TESTS,
           "the sortedness check refuses repeated uids (a multiset)"),
    Mutant("U3", "harness/uids.py", 'view(">u8")', 'view("<u8")', UID_TESTS,
           "uid words decoded little-endian"),
    Mutant("U4", "harness/uids.py", '    return np.sort(selected, kind="stable")', "    return selected", UID_TESTS,
           "subsets written in pool order, unsorted"),
    Mutant("U5", "harness/uids.py", "    if bad_rows.size:", "    if False:", UID_TESTS,
           "non-hex uids are accepted"),
    Mutant("U6", "harness/uids.py", "    if subset.dtype != UID_DTYPE or subset.ndim != 1:", "    if False:",
           UID_TESTS, "a subset file of another dtype is accepted"),
    Mutant("U7", "harness/uids.py",
           "chars[:, 0::2], chars[:, 1::2] = digits[octets >> 4], digits[octets & 15]",
           "chars[:, 0::2], chars[:, 1::2] = digits[octets & 15], digits[octets >> 4]", UID_TESTS,
           "hex digits of each byte swapped on encoding"),
    # -- samplers and their invariants -------------------------------------------------------------------------
    Mutant("P1", "plugins/basic_samplers.py", "(values >= self.params.threshold)", "(values > self.params.threshold)",
           SAMPLER_TESTS, "threshold keeps only scores strictly above it"),
    Mutant("P2", "plugins/basic_samplers.py", "chosen = ties[np.argsort(tie_uids, kind=\"stable\")[:need]]",
           "chosen = ties[:need]", SAMPLER_TESTS, "top_fraction breaks ties by pool position, not uid"),
    Mutant("P3", "plugins/basic_samplers.py", "k = int(np.floor(self.params.fraction * len(values)))",
           "k = int(np.ceil(self.params.fraction * len(values)))", SAMPLER_TESTS, "top_fraction rounds up"),
    Mutant("P4", "plugins/basic_samplers.py", "return (values >= ordered[n]).astype(np.uint32)",
           "return (values > ordered[n]).astype(np.uint32)", SAMPLER_TESTS,
           "rule=datacomp drops the boundary score"),
    Mutant("P5", "plugins/basic_samplers.py", "size=int(np.floor(self.params.fraction * n)), replace=False",
           "size=int(np.floor(self.params.fraction * n)), replace=True", SAMPLER_TESTS,
           "random_fraction draws with replacement (fewer uids)"),
    Mutant("P6", "harness/invariants.py",
           'if sampler.mode == "multiset" and int(counts.sum(dtype=np.int64)) != budget.samples_seen:',
           "if False:", SAMPLER_TESTS, "multiset counts need not sum to the budget"),
    Mutant("P7", "harness/invariants.py", 'if sampler.mode == "subset" and counts.size and counts.max() > 1:',
           "if False:", SAMPLER_TESTS, "subset counts above 1 are accepted"),
    Mutant("P8", "plugins/cap_sampling.py", "        z[top] -= alpha  # inf alpha: never again", "        pass",
           SAMPLER_TESTS, "batched soft cap never penalises a drawn uid"),
    Mutant("P9", "plugins/cap_sampling.py", "    return counts[draws] + earlier < cap",
           "    return counts[draws] + earlier <= cap", SAMPLER_TESTS, "batched hard cap allows cap + 1 copies"),
    Mutant("P10", "plugins/cap_race.py", "e[np.broadcast_to(np.asarray(k) >= law.cap, e.shape)] = np.inf",
           "e[np.broadcast_to(np.asarray(k) > law.cap, e.shape)] = np.inf", SAMPLER_TESTS,
           "exact hard cap allows cap + 1 copies"),
    Mutant("P11", "plugins/cap_race.py", "return Law(0.0, 1) if math.isinf(alpha) else Law(float(alpha), None)",
           "return Law(0.0, 1) if math.isinf(alpha) else Law(float(alpha) / 2, None)", SAMPLER_TESTS,
           "exact soft cap uses half the penalty"),
    Mutant("P12", "plugins/cap_sampling.py", "dtype=np.float64) / self.params.temperature",
           "dtype=np.float64)", SAMPLER_TESTS, "the cap samplers ignore their temperature"),
    # -- aggregation: task results -> groups -> board -----------------------------------------------------------
    Mutant("A1", "harness/evaluation/aggregate.py",
           "out[group] = _mean(present) if len(present) == len(values) else None",
           "out[group] = _mean(present) if present else None", BOARD_TESTS,
           "a group is averaged over the tasks present (a missing task is hidden)"),
    Mutant("A2", "harness/evaluation/aggregate.py",
           "        elif key in indexed:\n            duplicates.append(key)\n", "", BOARD_TESTS,
           "a duplicate result row replaces the first (last one wins, unreported)"),
    Mutant("A3", "leaderboard/aggregate.py", "(v - mean) ** 2 for v in values) / (n - 1))",
           "(v - mean) ** 2 for v in values) / n)", BOARD_TESTS, "the seeds' std divides by n"),
    Mutant("A4", "leaderboard/aggregate.py", "    return t_quantile(0.975, dof)", "    return 1.959963984540054",
           BOARD_TESTS, "the 95% interval uses the normal quantile for any number of seeds"),
    Mutant("A5", "leaderboard/aggregate.py",
           "    if n == 0 or any(v is None for v in values):\n        return Stat(n)",
           "    values = [v for v in values if v is not None]\n    n = len(values)\n    if n == 0:\n"
           "        return Stat(n)", BOARD_TESTS, "a seed missing a value is dropped from the mean"),
    Mutant("A6", "leaderboard/records.py", "    for name in record.group_order:\n        stored, computed",
           "    for name in ():\n        stored, computed", BOARD_TESTS,
           "a record's groups are not recomputed from its task metrics"),
    Mutant("A7", "leaderboard/build.py",
           "if not isinstance(value, str) or not value.startswith(_FORMULA_START):", "if True:", BOARD_TESTS,
           "formula-like CSV cells are written as they are"),
    Mutant("A8", "leaderboard/aggregate.py", "return (avg is None, -(avg or 0.0), primary is None",
           "return (avg is None, (avg or 0.0), primary is None", BOARD_TESTS, "the board ranks ascending"),
    Mutant("A9", "leaderboard/aggregate.py",
           "ranked = [e for e in entries if e.recipe_version == newest[e.recipe]]", "ranked = list(entries)",
           BOARD_TESTS, "superseded recipe versions are ranked beside the newest"),
)


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) under ``dest/filterbench``."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    root = dest / "filterbench"
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def run_tests(copy: Path, tests: tuple[str, ...], timeout_s: int) -> tuple[str, str, float]:
    """(outcome, first failing test or reason, seconds): outcome is passed, failed, error or timeout.

    The output of the last run is kept in ``copy/../last-run.txt`` (to see why a baseline failed)."""
    # no bytecode caches: a mutant of the same size written within the same second as the original would
    # otherwise be run from a stale .pyc (CPython checks source mtime in whole seconds and size)
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout", f"over {timeout_s} s", time.monotonic() - start
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    (copy.parent / "last-run.txt").write_text(output)
    if result.returncode == 0:
        return "passed", "", seconds
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    outcome = "failed" if result.returncode == 1 else "error"
    return outcome, failed.group(1) if failed else output.strip().splitlines()[-1][:120], seconds


def apply(copy: Path, mutant: Mutant) -> str:
    """Mutate the copy's file and return its original text (raises when ``old`` is not found exactly once)."""
    path = copy / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.id}: expected one occurrence in {mutant.path}, found "
                         f"{text.count(mutant.old)} (the code moved: update the mutant)")
    mutated = text.replace(mutant.old, mutant.new)
    compile(mutated, str(path), "exec")  # a mutant must be valid Python (no .pyc written: see run_tests)
    path.write_text(mutated)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutant ids to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each test set")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant before it counts as killed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.id:4} {m.path:34} {m.what}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copy = copy_checkout(Path(tmp))
        for m in chosen:  # every mutant must apply before anything runs
            original = apply(copy, m)
            (copy / m.path).write_text(original)
        if not args.no_baseline:
            for tests in sorted({m.tests for m in chosen}):
                outcome, detail, seconds = run_tests(copy, tests, args.timeout)
                print(f"baseline {' '.join(tests)}: {outcome} {detail} ({seconds:.0f} s)", file=sys.stderr)
                if outcome != "passed":
                    print((copy.parent / "last-run.txt").read_text()[-4000:], file=sys.stderr)
                    raise SystemExit("the unmutated tests must pass first")
        results = []
        for m in chosen:
            original = apply(copy, m)
            try:
                outcome, detail, seconds = run_tests(copy, m.tests, args.timeout)
            finally:
                (copy / m.path).write_text(original)
            status = "survived" if outcome == "passed" else "killed"
            results.append({"id": m.id, "path": m.path, "what": m.what, "status": status, "outcome": outcome,
                            "by": detail, "seconds": round(seconds, 1)})
            print(f"{m.id}: {status} ({outcome}) {detail} [{seconds:.0f} s]", file=sys.stderr)
    print("| id | file | mutant | result | first failing test |")
    print("|---|---|---|---|---|")
    for r in results:
        by = f"`{r['by']}`" if r["by"] else ""
        print(f"| {r['id']} | `{r['path']}` | {r['what']} | {r['status']} | {by} |")
    killed = sum(r["status"] == "killed" for r in results)
    print(f"\n{killed} killed, {len(results) - killed} survived of {len(results)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
