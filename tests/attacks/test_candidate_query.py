import pytest
import torch

from catride_core.attacks.base import Gallery
from catride_core.attacks.candidate_query import (
    CandidateAttack,
    GreedyTopTranslocation,
    QueryAttack,
)

# gallery pixels (slot: pixel) 0: 0.0, 1: 0.1, 2: 0.2, 3: 0.4, 4: 0.7, 5: 1.0 on the half circle;
# distances grow with |pixel difference|, so ranks can be read off the pixels
PIXELS = [0.0, 0.1, 0.2, 0.4, 0.7, 1.0]


def test_ca_and_qa_pranks_match_hand_computed_values(on_circle):
    gallery = Gallery(on_circle(PIXELS), torch.arange(6))
    qa = QueryAttack(raise_rank=True)
    # QA: query slot 0 (0.0), candidate slot 4 (0.7). The list is slots 1-5 (5 members);
    # 0.1, 0.2 and 0.4 are ahead of 0.7: 3 / 5 = 60 %
    clean = qa.score(gallery, torch.tensor([0]), torch.tensor([[4]]), gallery.embeddings[[0]])
    assert clean["QA+"].item() == pytest.approx(60.0)
    # query moved to 0.5: distances 0.4 (0.1), 0.3 (0.2), 0.1 (0.4), 0.2 (0.7), 0.5 (1.0):
    # only 0.4 is ahead of 0.7: 1 / 5 = 20 %
    moved = qa.score(gallery, torch.tensor([0]), torch.tensor([[4]]), on_circle([0.5]))
    assert moved["QA+"].item() == pytest.approx(20.0)

    ca = CandidateAttack(raise_rank=True)
    # CA: candidate slot 2 (0.2) in the list of query slot 5 (1.0). The list is slots 0-4, with
    # the candidate in its own place; the others are at distances 1.0 (0.0), 0.9 (0.1),
    # 0.6 (0.4), 0.3 (0.7) and the candidate at 0.8: 2 ahead, 2 / 5 = 40 %
    clean = ca.score(gallery, torch.tensor([2]), torch.tensor([[5]]), gallery.embeddings[[2]])
    assert clean["CA+"].item() == pytest.approx(40.0)
    # the same pair seen as QA gives the same clean prank
    as_qa = qa.score(gallery, torch.tensor([5]), torch.tensor([[2]]), gallery.embeddings[[5]])
    assert as_qa["QA+"].item() == pytest.approx(40.0)
    # candidate moved to 0.5 (distance 0.5): only 0.7 is ahead, 20 %; to 0.85 (0.15): none, 0 %
    moved = ca.score(gallery, torch.tensor([2, 2]), torch.tensor([[5], [5]]), on_circle([0.5, 0.85]))
    assert moved["CA+"].tolist() == pytest.approx([20.0, 0.0])
    # moved to 0.05 (distance 0.95): only 0.0 is behind it, 3 ahead of the 4 others, 60 %;
    # the candidate's clean copy (0.2) is not in the list and is not counted
    far = ca.score(gallery, torch.tensor([2]), torch.tensor([[5]]), on_circle([0.05]))
    assert far["CA+"].item() == pytest.approx(60.0)


def test_ca_and_qa_average_the_prank_over_w_queries_and_m_candidates(on_circle):
    gallery = Gallery(on_circle(PIXELS), torch.arange(6))
    # CA, W = 2: candidate slot 2 (0.2) is at 40 % in the list of slot 5 (above) and, in the list
    # of slot 0 (0.0), behind only 0.1 of its 4 others: 1 / 5 = 20 %; the mean is 30 %
    ca = CandidateAttack(raise_rank=True, queries_per_candidate=2)
    score = ca.score(gallery, torch.tensor([2]), torch.tensor([[5, 0]]), gallery.embeddings[[2]])
    assert score["CA+"].item() == pytest.approx(30.0)
    # QA, M = 2: in the list of slot 0, candidate slot 4 is at 60 % (above) and slot 1 (0.1),
    # its top-1, at 0 %; the mean is 30 %
    qa = QueryAttack(raise_rank=False, candidates_per_query=2)
    score = qa.score(gallery, torch.tensor([0]), torch.tensor([[4, 1]]), gallery.embeddings[[0]])
    assert score["QA-"].item() == pytest.approx(30.0)
    # W and M are the number of targets each attacked item gets
    targets = ca.select_targets(gallery, torch.arange(6), torch.Generator().manual_seed(0))
    assert targets.shape == (6, 2) and (targets != torch.arange(6)[:, None]).all()
    assert (targets[:, 0] != targets[:, 1]).all()


def test_gtt_retains_the_top_one_within_four_places(on_circle):
    # query slot 0 (0.0); its clean top-1 is slot 1 (0.1). Moved to 0.5, the distances are
    # 0.4 (0.1), 0.3 (0.2), 0.1 (0.4), 0.2 (0.7), 0.5 (1.0): 3 ahead, kept (100). Moved to
    # 0.65: 0.55 (0.1), 0.45, 0.25, 0.05, 0.35: 4 ahead, lost (0).
    gallery = Gallery(on_circle(PIXELS), torch.arange(6))
    gtt = GreedyTopTranslocation()
    targets = gtt.select_targets(gallery, torch.tensor([0, 0]), torch.Generator())
    assert targets.tolist() == [[1], [1]]
    retained = gtt.score(gallery, torch.tensor([0, 0]), targets, on_circle([0.5, 0.65]))["GTT"]
    assert retained.tolist() == [100.0, 0.0]
