"""The progress line: a resumed run's rate and ETA count only the work done since the restart."""

import re
import time

from lpg.progress import ProgressBar


def test_resumed_bar_rate_and_eta_leave_out_the_restored_work(capsys):
    with ProgressBar("train x", 1000, "steps", enabled=True, plain_every_s=0.0) as bar:
        bar.resume_from(900)
        time.sleep(0.05)
        bar.update(10)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "910/1,000 steps (91%)" in line
    rate = float(re.search(r"([\d,.]+) steps/s", line).group(1).replace(",", ""))
    elapsed = 0.05
    assert 0 < rate <= 10 / elapsed  # the old bar divided all 910 steps by the elapsed time: > 18,000 steps/s
    eta = float(re.search(r"ETA ([\d.]+)s", line).group(1))
    assert eta >= 90 / (10 / elapsed) - 0.5  # 90 steps left at <= 200 steps/s


def test_fresh_bar_counts_every_step():
    with ProgressBar("train x", 100, "steps", enabled=False) as bar:
        time.sleep(0.02)
        bar.update(50)
        assert bar.done == 50 and 0 < bar.rate() <= 50 / 0.02
