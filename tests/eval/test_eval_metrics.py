import datetime
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mjepa.eval.metrics import (
    accuracy_from_multi_hot,
    average_precision,
    gather_without_padding,
    mean_average_precision,
    top_k_accuracy,
)

# Computed with scikit-learn 1.9.1 `average_precision_score(targets, scores)` in a throwaway venv.
SKLEARN_CASES = [
    ([0.9, 0.8, 0.8, 0.8, 0.5, 0.3, 0.3], [1, 0, 1, 1, 0, 0, 1], 0.7678571428571428),
    ([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1], 0.5),
    ([0.1, 0.4, 0.35, 0.8, 0.05, 0.7], [0, 0, 1, 1, 0, 1], 0.9166666666666665),
]


def reference_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """scikit-learn's AP semantics, written threshold by threshold (independent of the cumsum implementation)."""
    num_positives = targets.sum()
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        predicted = scores >= threshold
        true_positives = targets[predicted].sum()
        precision = true_positives / predicted.sum()
        recall = true_positives / num_positives
        ap += (recall - previous_recall) * precision
        previous_recall = recall
    return ap


@pytest.mark.parametrize("scores, targets, expected", SKLEARN_CASES)
def test_average_precision_matches_sklearn_values(scores, targets, expected):
    assert average_precision(torch.tensor(scores), torch.tensor(targets)) == pytest.approx(expected, abs=1e-12)
    assert reference_average_precision(np.array(scores), np.array(targets)) == pytest.approx(expected, abs=1e-12)


def test_map_matches_reference_with_classes_without_positives():
    generator = torch.Generator().manual_seed(1)
    # Scores rounded to one decimal, so many ties occur within each class.
    scores = torch.round(torch.rand(200, 12, generator=generator), decimals=1)
    targets = (torch.rand(200, 12, generator=generator) < 0.2).to(torch.int64)
    targets[:, [3, 7]] = 0

    result = mean_average_precision(scores, targets)

    expected_per_class = [
        reference_average_precision(scores[:, c].numpy(), targets[:, c].numpy()) if c not in (3, 7) else None
        for c in range(12)
    ]
    assert result.per_class[3] is None and result.per_class[7] is None
    for ap, expected in zip(result.per_class, expected_per_class):
        if expected is not None:
            assert ap == pytest.approx(expected, abs=1e-12)
    scored = [ap for ap in expected_per_class if ap is not None]
    assert result.map == pytest.approx(sum(scored) / len(scored), abs=1e-12)
    assert (result.num_classes_scored, result.num_classes_without_positives) == (10, 2)


def test_perfect_ranking_gives_one():
    targets = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7], [0.0, 0.3]])
    assert mean_average_precision(scores, targets).map == 1.0


def test_map_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        mean_average_precision(torch.rand(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN/inf"):
        mean_average_precision(torch.tensor([[float("nan")], [0.1]]), torch.tensor([[1], [0]]))
    with pytest.raises(ValueError, match="NaN/inf"):
        mean_average_precision(torch.tensor([[float("inf")], [0.1]]), torch.tensor([[1], [0]]))
    with pytest.raises(ValueError, match="binary"):
        mean_average_precision(torch.rand(2, 1), torch.tensor([[2], [0]]))
    with pytest.raises(ValueError, match="no positive"):
        average_precision(torch.rand(3), torch.zeros(3))


def test_top_k_accuracy():
    logits = torch.tensor(
        [
            [0.1, 0.5, 0.2, 0.0, 0.3, 0.9],  # label 5: top-1 hit
            [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],  # label 4: rank 5, top-5 hit only
            [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],  # label 5: rank 6, miss
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # label 1: top-1 hit
        ]
    )
    labels = torch.tensor([5, 4, 5, 1])
    assert top_k_accuracy(logits, labels, k=1) == 0.5
    assert top_k_accuracy(logits, labels, k=5) == 0.75
    with pytest.raises(ValueError, match="k=7"):
        top_k_accuracy(logits, labels, k=7)


def test_accuracy_from_multi_hot():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])
    multi_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert accuracy_from_multi_hot(logits, multi_hot) == pytest.approx(1 / 3)
    assert accuracy_from_multi_hot(logits, multi_hot, k=2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="row 1 has 2 positives"):
        accuracy_from_multi_hot(logits, torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]]))


def test_gather_without_process_group_drops_padding():
    local = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(gather_without_padding(local, 3), local[:3])
    with pytest.raises(ValueError, match="num_real_local=5"):
        gather_without_padding(local, 5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PAD = -1.0
REAL_ROWS_PER_RANK = (3, 2)


def _rank_rows(rank: int) -> torch.Tensor:
    """4 rows: the real ones hold 10*rank + row index, the padding rows hold PAD."""
    rows = torch.full((4, 2), PAD)
    for row in range(REAL_ROWS_PER_RANK[rank]):
        rows[row] = 10.0 * rank + row
    return rows


def _gather_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    # A short timeout turns a collective that never completes into a failure instead of a hung test run.
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        gathered = gather_without_padding(_rank_rows(rank), REAL_ROWS_PER_RANK[rank])
        torch.save(gathered, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_two_processes_drops_padding(tmp_path):
    # torch.multiprocessing's spawn API with the "fork" start method: children skip re-importing torch, which
    # keeps this test around a second on a loaded machine instead of several.
    mp.start_processes(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    expected = torch.cat([_rank_rows(0)[:3], _rank_rows(1)[:2]])
    for rank in range(2):
        gathered = torch.load(tmp_path / f"rank{rank}.pt")
        assert gathered.shape == (5, 2)
        assert torch.equal(gathered, expected)
        assert not (gathered == PAD).any()
