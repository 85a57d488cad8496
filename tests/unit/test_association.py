"""IoU matrix, score fusion and the cost-limited assignment."""

from __future__ import annotations

import numpy as np
import pytest

from services.tracker.association import fuse_score, iou_matrix, linear_assignment


@pytest.mark.parametrize(
    ("box_a", "box_b", "expected_iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # disjoint
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges only
        ([0, 0, 10, 10], [0, 0, 10, 5], 0.5),  # b is the top half of a
        ([0, 0, 10, 10], [5, 0, 15, 10], 50.0 / 150.0),  # shifted by half a width
        ([0, 0, 10, 10], [2, 2, 7, 7], 25.0 / 100.0),  # b inside a
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # empty boxes: 0, not NaN
        ([10, 10, 0, 0], [0, 0, 10, 10], 0.0),  # inverted box has no area
    ],
)
def test_iou_known_values(box_a: list[float], box_b: list[float], expected_iou: float) -> None:
    iou = iou_matrix(np.array([box_a], dtype=float), np.array([box_b], dtype=float))
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(expected_iou)


def test_iou_matrix_pairs_every_row_with_every_column() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=float)
    b = np.array([[100, 100, 110, 110], [0, 0, 10, 5], [50, 50, 60, 60]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[0.0, 0.5, 0.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(("n_a", "n_b"), [(0, 3), (2, 0), (0, 0)])
def test_iou_matrix_of_empty_inputs_has_the_right_shape(n_a: int, n_b: int) -> None:
    assert iou_matrix(np.zeros((n_a, 4)), np.ones((n_b, 4))).shape == (n_a, n_b)


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros((2, 3)), np.zeros((1, 2, 4))])
def test_iou_matrix_rejects_wrong_shapes(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        iou_matrix(bad, np.zeros((1, 4)))


def _as_pairs(matches: np.ndarray) -> list[tuple[int, int]]:
    return [(int(row), int(col)) for row, col in matches]


@pytest.mark.parametrize(
    ("cost", "max_cost", "expected_matches", "expected_rows", "expected_cols"),
    [
        # The cheap diagonal wins over the cross pairing.
        ([[0.1, 0.9], [0.8, 0.2]], 1.0, [(0, 0), (1, 1)], [], []),
        # The global optimum, not greedy: row 0 gives up its best column.
        ([[0.1, 0.2], [0.15, 0.9]], 1.0, [(0, 1), (1, 0)], [], []),
        # Entries above max_cost are never matched.
        ([[0.1, 0.9], [0.9, 0.95]], 0.5, [(0, 0)], [1], [1]),
        ([[0.6, 0.7]], 0.5, [], [0], [0, 1]),
        # A pair exactly at the limit is allowed.
        ([[0.5]], 0.5, [(0, 0)], [], []),
        # Matching more rows is not worth a worse total: (0,1)+(1,0) costs 1.5 > 0.1 + 0.8 open.
        ([[0.1, 0.75], [0.75, 0.95]], 0.8, [(0, 0)], [1], [1]),
        # Rectangular: more columns than rows and more rows than columns.
        ([[0.9, 0.1, 0.5]], 1.0, [(0, 1)], [], [0, 2]),
        ([[0.3], [0.2], [0.7]], 1.0, [(1, 0)], [0, 2], []),
        # Infinite cost means forbidden.
        ([[np.inf, 0.4]], 1.0, [(0, 1)], [], [0]),
    ],
)
def test_linear_assignment(
    cost: list[list[float]],
    max_cost: float,
    expected_matches: list[tuple[int, int]],
    expected_rows: list[int],
    expected_cols: list[int],
) -> None:
    matches, unmatched_rows, unmatched_cols = linear_assignment(np.array(cost), max_cost)
    assert matches.shape == (len(expected_matches), 2)
    assert _as_pairs(matches) == expected_matches
    assert unmatched_rows.tolist() == expected_rows
    assert unmatched_cols.tolist() == expected_cols


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_linear_assignment_of_empty_matrix_leaves_everything_unmatched(shape: tuple[int, int]) -> None:
    matches, unmatched_rows, unmatched_cols = linear_assignment(np.zeros(shape), 0.5)
    assert matches.shape == (0, 2)
    assert unmatched_rows.tolist() == list(range(shape[0]))
    assert unmatched_cols.tolist() == list(range(shape[1]))


@pytest.mark.parametrize(
    ("cost", "max_cost"),
    [(np.zeros(3), 0.5), (np.array([[np.nan]]), 0.5), (np.zeros((1, 1)), -1.0), (np.zeros((1, 1)), np.inf)],
)
def test_linear_assignment_rejects_bad_input(cost: np.ndarray, max_cost: float) -> None:
    with pytest.raises(ValueError):
        linear_assignment(cost, max_cost)


def test_fuse_score_weights_similarity_by_detection_score() -> None:
    iou_distance = np.array([[0.2, 0.2], [1.0, 0.0]])
    fused = fuse_score(iou_distance, np.array([1.0, 0.5]))
    np.testing.assert_allclose(fused, [[0.2, 0.6], [1.0, 0.5]])


def test_fuse_score_rejects_mismatched_scores() -> None:
    with pytest.raises(ValueError, match=r"\(M,\)"):
        fuse_score(np.zeros((2, 3)), np.ones(2))
