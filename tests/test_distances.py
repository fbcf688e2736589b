import torch

from catride_core.distances import embedding_shift, paired_distances, pairwise_distances


def test_pairwise_matches_cdist_and_paired():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(pairwise_distances(x, y), torch.cdist(x, y))
    assert torch.allclose(paired_distances(x[:4], y), torch.cdist(x[:4], y).diagonal())


def test_pairwise_is_finite_on_duplicates():
    x = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    d = pairwise_distances(x, x)
    assert torch.isfinite(d).all() and d.diagonal().abs().max() < 1e-3


def test_embedding_shift_has_a_gradient_at_zero():
    # the reason it exists: sign-PGD maximising the shift must be able to leave its start
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    embedding_shift(x, x.detach()).sum().backward()
    assert x.grad.abs().sum() > 0
