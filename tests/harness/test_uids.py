import numpy as np
import pytest

from filterbench.harness.errors import PoolError, SubsetError
from filterbench.harness.uids import UID_DTYPE, expand_counts, hex_to_pairs, pairs_to_hex, read_subset, write_subset


def test_hi_is_the_first_16_hex_characters():
    uid = "0123456789abcdef" + "fedcba9876543210"
    pairs = hex_to_pairs([uid])
    assert pairs.dtype == UID_DTYPE
    assert int(pairs["f0"][0]) == int(uid[:16], 16)
    assert int(pairs["f1"][0]) == int(uid[16:], 16)
    hi, lo = divmod(int(uid, 16), 2**64)
    assert (int(pairs["f0"][0]), int(pairs["f1"][0])) == (hi, lo)


def test_round_trip_random_uids():
    rng = np.random.default_rng(1)
    uids = [rng.bytes(16).hex() for _ in range(1000)] + ["f" * 32, "0" * 32]
    assert pairs_to_hex(hex_to_pairs(uids)).tolist() == uids


def test_upper_case_hex_is_the_same_uid():
    assert hex_to_pairs(["ABCDEF" + "0" * 26]) == hex_to_pairs(["abcdef" + "0" * 26])


@pytest.mark.parametrize("bad", ["abc", "g" * 32, "0" * 31 + " ", "0" * 33])
def test_malformed_uid_names_file_and_row(bad):
    with pytest.raises(PoolError, match=r"shard\.parquet: row 1: uid"):
        hex_to_pairs(["0" * 32, bad], where="shard.parquet")


def test_subset_is_sorted_with_repeats(tmp_path):
    uids = hex_to_pairs(["ff" * 16, "00" * 16, "0f" * 16])
    path = tmp_path / "subset.npy"
    assert write_subset(path, uids, np.array([2, 0, 1])) == 3
    subset = read_subset(path)
    assert pairs_to_hex(subset).tolist() == ["0f" * 16, "ff" * 16, "ff" * 16]
    assert np.load(path).dtype == np.dtype("u8,u8")


def test_sort_is_by_128_bit_value():
    uids = hex_to_pairs(["0000000000000001" + "0" * 16, "0" * 16 + "ffffffffffffffff"])
    assert pairs_to_hex(expand_counts(uids, np.array([1, 1]))).tolist()[0] == "0" * 16 + "f" * 16


def test_unsorted_subset_is_refused(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, hex_to_pairs(["ff" * 16, "00" * 16]))
    with pytest.raises(SubsetError, match="bad.npy: subset is not sorted at position 1"):
        read_subset(path)


def test_wrong_dtype_and_raw_memmap(tmp_path):
    np.save(tmp_path / "ints.npy", np.arange(4))
    with pytest.raises(SubsetError, match="ints.npy: subset dtype int64"):
        read_subset(tmp_path / "ints.npy")
    raw = tmp_path / "raw.bin"
    hex_to_pairs(["00" * 16, "01" * 16]).tofile(raw)
    assert len(read_subset(raw)) == 2
    (tmp_path / "odd.bin").write_bytes(b"x" * 17)
    with pytest.raises(SubsetError, match="not a multiple of 16 bytes"):
        read_subset(tmp_path / "odd.bin")
