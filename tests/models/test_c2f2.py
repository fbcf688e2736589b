import pytest
import torch

from catride_core.models import build_model


def test_c2f2_layout_and_unit_embeddings():
    torch.manual_seed(0)
    model = build_model("c2f2", 16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (2, 2)),
        (32, 64, (5, 5), (2, 2)),
    ]
    assert [(l.in_features, l.out_features) for l in linears] == [(3136, 1024), (1024, 16)]
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=1), torch.ones(3))


def test_unknown_arch_names_the_key():
    with pytest.raises(ValueError, match="pretrain.arch"):
        build_model("vgg", 8)
