"""Publishing is explicit: `filterbench leaderboard add RECORDS...` validates records, copies them into a board's
records folder (replacing an earlier record of the same run) and rebuilds that board; an installed package
refuses to publish into itself."""

from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.leaderboard.records import load_records, write_record


def _add(*args):
    return CliRunner().invoke(cli, ["leaderboard", "add", *[str(a) for a in args]])


def test_add_copies_valid_records_and_rebuilds_the_board(fake_record, tmp_path):
    runs = tmp_path / "work" / "records"
    first = write_record(fake_record(recipe="mine", seed=0), runs)
    write_record(fake_record(recipe="mine", seed=1), runs)
    board = tmp_path / "checkout" / "leaderboard" / "records"
    added = _add(runs, "--to", board)
    assert added.exit_code == 0, added.output
    assert sorted((r.recipe.name, r.seed) for r in load_records(board)) == [("mine", 0), ("mine", 1)]
    assert added.output.strip().splitlines()[-1] == str(board.parent / "leaderboard.html")
    assert (board / "small" / first.name).read_bytes() == first.read_bytes()  # copied as written, digest intact


def test_add_refuses_a_tampered_record_and_copies_nothing(fake_record, tmp_path):
    runs = tmp_path / "records"
    good = write_record(fake_record(recipe="good"), runs)
    bad = write_record(fake_record(recipe="bad"), runs)
    bad.write_text(bad.read_text().replace('"seed": 0', '"seed": 7'))
    board = tmp_path / "board" / "records"
    added = _add(good, bad, "--to", board)
    assert added.exit_code == 2 and "digest mismatch" in added.output and bad.name in added.output
    assert not board.exists()


def test_an_installed_package_does_not_publish_into_itself(fake_record, tmp_path, monkeypatch):
    from filterbench.leaderboard import publish

    monkeypatch.setattr(publish, "DEFAULT_RECORDS_DIR", tmp_path / "site-packages" / "filterbench" / "leaderboard"
                        / "records")
    record = write_record(fake_record(), tmp_path / "records")
    added = _add(record)
    assert added.exit_code == 2
    assert "is an installed package, not a checkout: give --to" in added.output
