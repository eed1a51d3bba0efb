"""The progress line: a resumed run's rate and ETA count only the work done since the restart."""

import re
import time

from lpg.progress import ProgressBar


def test_resumed_bar_rate_and_eta_leave_out_the_restored_work(capsys):
    with ProgressBar("train x", 1000, "steps", enabled=True, plain_every_s=0.0) as bar:
        bar.resume_from(900)
        time.sleep(0.3)  # the first update (compilation)
        bar.update(10)
        time.sleep(0.05)
        bar.update(10)
    first, second = capsys.readouterr().err.strip().splitlines()[-2:]
    assert "910/1,000 steps (91%)" in first and "ETA ?" in first  # no rate known yet
    assert "920/1,000 steps (92%)" in second
    rate = float(re.search(r"([\d,.]+) steps/s", second).group(1).replace(",", ""))
    assert 10 / 0.35 < rate <= 10 / 0.05  # the restored 900 and the first update's compile time left out
    eta = float(re.search(r"ETA ([\d.]+)s", second).group(1))
    assert 80 / (10 / 0.05) - 0.5 <= eta < 80 / (10 / 0.35)  # 80 steps left at the steady rate


def test_fresh_bar_counts_every_step():
    with ProgressBar("train x", 100, "steps", enabled=False) as bar:
        time.sleep(0.02)
        bar.update(50)
        assert bar.done == 50 and 0 < bar.rate() <= 50 / 0.02


def test_terminal_line_fits_a_narrow_terminal_with_every_number_whole():
    import io

    from rich.console import Console

    for width in (80, 160):
        bar = ProgressBar("discover offline chain/short (grad)", 2_000_000, "steps")
        screen = io.StringIO()
        bar._console, bar._interactive = Console(file=screen, force_terminal=True, width=width, color_system=None), True
        with bar:
            bar.update(500_000, "return 0.512")
            time.sleep(0.01)
            bar.update(1_500_000, "return 0.512")
        last = [
            line
            for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()))
            if line.strip()
        ][-1]
        assert len(last.rstrip()) <= width, last
        assert "2,000,000/2,000,000 steps" in last and re.search(r"[\d,]+ steps/s \d:\d\d:\d\d ETA 0:00:00", last), last
        assert ("return 0.512" in last) == (width >= 160), last  # the status gives way first
