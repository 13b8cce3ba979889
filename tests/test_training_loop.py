"""Training machinery shared by every trainer: prefetching that fails loudly, a log cut back on resume."""

import pytest

from taskcomp.training.loop import CsvLog, Prefetcher


def test_prefetcher_raises_the_error_of_a_batch_it_could_not_make():
    calls = iter([1, 2])

    def make():
        v = next(calls, None)
        if v is None:
            raise ValueError("no more crops")
        return v

    pf = Prefetcher(make, depth=1)
    try:
        assert pf.next() == 1 and pf.next() == 2
        with pytest.raises(ValueError, match="no more crops"):
            pf.next()
    finally:
        pf.close()


def test_csv_log_drops_rows_after_the_checkpoint_on_resume(tmp_path):
    p = tmp_path / "log.csv"
    log = CsvLog(p, ["step", "loss"])
    for s in range(1, 6):
        log.row([s, s / 10])
    log.close()
    with open(p, "a") as f:
        f.write("6,0.")  # a line cut by a kill
    log = CsvLog(p, ["step", "loss"], resume_step=3)
    log.row([4, 0.44])
    log.close()
    assert p.read_text().splitlines() == ["step,loss", "1,0.1", "2,0.2", "3,0.3", "4,0.44"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_csv_log_of_a_fresh_run_replaces_a_log_without_checkpoint(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("")  # a run killed before its first flush
    log = CsvLog(p, ["step", "loss"])
    log.row([1, 0.5])
    log.close()
    assert p.read_text().splitlines() == ["step,loss", "1,0.5"]
    p.write_text("1,0.5\n")  # rows without a header, then a resume at step 1
    CsvLog(p, ["step", "loss"], resume_step=1).close()
    assert p.read_text().splitlines() == ["step,loss", "1,0.5"]
