import pytest
import torch
from torch import nn

from mjepa.eval.retrieval import correct_item_ranks, cross_modal_retrieval, recall_at_k


@pytest.mark.parametrize("metric", ["l1", "cosine"])
def test_gallery_near_query_gives_perfect_recall(metric):
    query = torch.randn(50, 16)
    gallery = query + 1e-3 * torch.randn(50, 16)
    assert recall_at_k(query, gallery, ks=(1, 5), metric=metric) == {1: 1.0, 5: 1.0}


def test_permuted_gallery_recall_is_fixed_point_fraction_with_pessimistic_ties():
    # One-hot points: every wrong item is at the same L1 distance (2), so for a query whose correct item is not
    # its exact match, the other 6 wrong items tie with the correct one and rank ahead of it.
    query = torch.eye(8)
    permutation = torch.tensor([0, 2, 1, 3, 5, 6, 4, 7])  # fixed points: 0, 3, 7
    gallery = query[permutation]
    assert recall_at_k(query, gallery, ks=(1, 5, 7, 8), metric="l1") == {1: 3 / 8, 5: 3 / 8, 7: 3 / 8, 8: 1.0}


def test_tie_with_the_correct_item_counts_against_the_query():
    query = torch.tensor([[0.0], [10.0], [12.0]])
    gallery = torch.tensor([[1.0], [-1.0], [12.0]])  # query 0: items 0 and 1 both at distance 1
    assert correct_item_ranks(query, gallery, metric="l1").tolist() == [1, 2, 0]
    assert recall_at_k(query, gallery, ks=(1, 2, 3)) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})


@pytest.mark.parametrize("metric", ["l1", "cosine"])
def test_chunk_size_does_not_change_ranks(metric):
    query, gallery = torch.randn(37, 8), torch.randn(37, 8)
    expected = correct_item_ranks(query, gallery, metric=metric, chunk_size=1000)
    for chunk_size in (1, 5, 36):
        assert torch.equal(correct_item_ranks(query, gallery, metric=metric, chunk_size=chunk_size), expected)


def test_cosine_and_l1_disagree_on_constructed_example():
    # Query 0 points the same way as gallery 0 (cosine hit) but gallery 1 is much closer in L1 (L1 miss).
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gallery = torch.tensor([[10.0, 0.0], [1.0, 0.2]])
    assert recall_at_k(query, gallery, ks=(1,), metric="l1") == {1: 0.5}
    assert recall_at_k(query, gallery, ks=(1,), metric="cosine") == {1: 1.0}


def _scaling_linear(scale: float, width: int) -> nn.Linear:
    head = nn.Linear(width, width, bias=False)
    with torch.no_grad():
        head.weight.copy_(scale * torch.eye(width))
    return head


def test_cross_modal_uses_each_head_in_its_direction():
    num_clips, width = 40, 12
    audio = torch.randn(num_clips, width)
    video = -2.0 * audio  # the "true" cross-modal maps: audio -> video is x * -2, video -> audio is x * -0.5

    results = cross_modal_retrieval(audio, video, _scaling_linear(-2.0, width), lambda x: -0.5 * x, ks=(1, 5))

    assert results["predictor_l1"].audio_to_video == {1: 1.0, 5: 1.0}
    assert results["predictor_l1"].video_to_audio == {1: 1.0, 5: 1.0}
    # Raw cosine: each clip's other modality points exactly the opposite way, so it ranks last of 40.
    assert results["cosine"].audio_to_video == {1: 0.0, 5: 0.0}
    assert results["cosine"].video_to_audio == {1: 0.0, 5: 0.0}
    assert results["cosine"].as_flat_dict()["retrieval/cosine/v2a/R@5"] == 0.0

    swapped = cross_modal_retrieval(audio, video, lambda x: -0.5 * x, _scaling_linear(-2.0, width), ks=(1,))
    assert swapped["predictor_l1"].audio_to_video[1] < 0.5


def test_identity_head_on_nearly_equal_modalities():
    audio = torch.randn(30, 6)
    video = audio + 1e-3 * torch.randn(30, 6)
    results = cross_modal_retrieval(audio, video, nn.Identity(), nn.Identity(), ks=(1,))
    for result in results.values():
        assert result.audio_to_video == {1: 1.0} and result.video_to_audio == {1: 1.0}


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        recall_at_k(torch.rand(4, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="metric='l2'"):
        recall_at_k(torch.rand(4, 3), torch.rand(4, 3), metric="l2")
    with pytest.raises(ValueError, match="all zeros"):
        recall_at_k(torch.zeros(4, 3), torch.rand(4, 3), metric="cosine")
    with pytest.raises(ValueError, match="NaN/inf"):
        recall_at_k(torch.full((2, 3), float("nan")), torch.rand(2, 3))
    with pytest.raises(ValueError, match="ks="):
        recall_at_k(torch.rand(4, 3), torch.rand(4, 3), ks=(0,))
    with pytest.raises(ValueError, match="head_a_to_v output"):
        cross_modal_retrieval(torch.rand(4, 3), torch.rand(4, 3), lambda x: x[:, :2], nn.Identity())
