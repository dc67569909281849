import pytest
import torch

from mjepa.data.loading.samplers import DistributedShardSampler, class_balance_weights, mixture_weights, seed_worker
from mjepa.data.loading.stream import StepBatchSampler


def _stream_draws(weights: torch.Tensor, steps: int, world_size: int = 1) -> list[int]:
    """Dataset indices the training stream draws over ``steps`` steps of 64, all ranks together."""
    draws = []
    for rank in range(world_size):
        sampler = StepBatchSampler(
            len(weights), 64, 1, world_size, rank, seed=0, start_step=0, total_steps=steps, weights=weights
        )
        draws += [index for batch in sampler for index, _ in batch]
    return draws


def test_training_shards_are_equal_sized_and_cover_everything():
    shards = [list(DistributedShardSampler(10, 3, r, shuffle=True, seed=1)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(sum(shards, [])) == set(range(10))


def test_evaluation_shards_never_duplicate_a_sample():
    shards = [list(DistributedShardSampler(10, 3, r, shuffle=False, pad=False)) for r in range(3)]
    flat = sum(shards, [])
    assert sorted(flat) == list(range(10)) and len(flat) == 10
    assert [len(DistributedShardSampler(10, 3, r, pad=False)) for r in range(3)] == [4, 3, 3]


def test_shuffle_depends_on_seed_and_epoch_only():
    a = DistributedShardSampler(50, seed=3)
    b = DistributedShardSampler(50, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_bad_rank_is_an_error():
    with pytest.raises(ValueError, match="rank"):
        DistributedShardSampler(10, 2, 2)


def test_class_balance_weights_follow_inverse_class_frequency():
    labels = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 1], [0, 0]])
    w = class_balance_weights(labels)
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0, 1 / 3]))
    draws = _stream_draws(class_balance_weights(labels[:4]), 60)
    rare_share = sum(1 for i in draws if i == 3) / len(draws)
    assert abs(rare_share - 0.5) < 0.05  # the single rare item is drawn as often as the three common ones


def test_mixture_weights_draw_datasets_in_proportion():
    weights = mixture_weights([100, 10], [1.0, 3.0])
    draws = torch.tensor(_stream_draws(weights, 120))
    assert abs(float((draws >= 100).float().mean()) - 0.75) < 0.03


def test_weighted_draws_do_not_depend_on_the_number_of_ranks():
    weights = mixture_weights([30, 10], [1.0, 1.0])
    one, two = _stream_draws(weights, 4, world_size=1), _stream_draws(weights, 4, world_size=2)
    assert sorted(one) == sorted(two) and len(one) == 4 * 64


def test_worker_seeds_depend_on_seed_rank_worker():
    values = []
    for args in ((0, 0, 0), (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)):
        seed_worker(args[2], seed=args[0], rank=args[1])
        values.append(float(torch.rand(())))
    assert values[0] == values[1] and len(set(values[1:])) == 4
