"""The bench's statistics: a wrong median or slope would silently misreport every number."""

from __future__ import annotations

import pytest

from bench.procmem import parse_status_kb
from bench.stats import fit_line, median, median_ratio, x_realtime


def test_median_odd_even_and_empty() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_median_ratio_pairs_runs_taken_side_by_side() -> None:
    # Pairwise ratios 2, 3, 10 -> 3; the ratio of medians would be 40/10 = 4.
    assert median_ratio([20.0, 30.0, 100.0], [10.0, 10.0, 10.0]) == 3.0
    with pytest.raises(ValueError):
        median_ratio([1.0], [1.0, 2.0])


def test_fit_line_exact_and_noisy() -> None:
    line = fit_line([0.5, 2.0, 5.0], [11.0, 38.0, 92.0])  # y = 18 x + 2
    assert line.slope == pytest.approx(18.0)
    assert line.intercept == pytest.approx(2.0)
    assert line.r2 == pytest.approx(1.0)
    assert line.at(60.0) == pytest.approx(1082.0)
    noisy = fit_line([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert noisy.slope == pytest.approx(0.8)
    assert 0.0 < noisy.r2 < 1.0


def test_fit_line_rejects_degenerate_input() -> None:
    with pytest.raises(ValueError):
        fit_line([1.0], [2.0])
    with pytest.raises(ValueError):
        fit_line([1.0, 1.0], [2.0, 3.0])


def test_x_realtime() -> None:
    assert x_realtime(30.0, 10.0) == 3.0
    assert x_realtime(30.0, 60.0) == 0.5


def test_parse_status_kb() -> None:
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t   65536 kB\n"
    assert parse_status_kb(status, "VmHWM") == 123456
    assert parse_status_kb(status, "VmRSS") == 65536
    assert parse_status_kb(status, "VmSwap") is None
