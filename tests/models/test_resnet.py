"""ResNet embedders: shapes, normalisation inside, frozen BatchNorm, local weights, no download."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from catride_core.errors import ArtifactError
from catride_core.models import Embedder, build_model
from catride_core.models.resnet import IMAGENET_MEAN, ResNetEmbedding


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt to fetch weights fails the test instead of reaching the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a weights download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]


def test_registry_builds_resnet18_embedder():
    torch.manual_seed(0)
    model = build_model("resnet18", embedding_dim=16)
    assert isinstance(model, Embedder) and isinstance(model.network, ResNetEmbedding)
    assert (model.arch, model.image_size, model.channels, model.embedding_dim) == ("resnet18", 224, 3, 16)
    assert model.network.backbone.fc.out_features == 16


def test_normalisation_is_the_first_layer():
    model = ResNetEmbedding("resnet18", 8)
    mean_image = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(model.normalize(mean_image), torch.zeros(1, 3, 4, 4))
    assert next(iter(model.children())) is model.normalize


def test_forward_backward_small_input_keeps_batchnorm_frozen():
    torch.manual_seed(0)
    model = build_model("resnet18", embedding_dim=16)
    model.train()
    assert model.training and model.network.backbone.fc.training
    assert not any(bn.training for bn in batchnorms(model))
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    images = torch.rand(4, 3, 64, 64)
    embeddings = model(images)
    assert embeddings.shape == (4, 16)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(4))
    embeddings[:, 0].sum().backward()
    assert model.network.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.network.backbone.bn1.weight.grad is not None  # affine parameters still train
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, before[name], msg=f"{name} changed in train mode")
    model.eval()
    model.train(True)
    assert not any(bn.training for bn in batchnorms(model))


def test_one_224px_optimiser_step_changes_weights_not_running_stats():
    torch.manual_seed(0)
    model = build_model("resnet18", embedding_dim=8).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    fc_before = model.network.backbone.fc.weight.detach().clone()
    mean_before = model.network.backbone.layer1[0].bn1.running_mean.clone()
    loss = model(torch.rand(2, 3, 224, 224)).prod(dim=0).sum()
    loss.backward()
    optimiser.step()
    assert not torch.equal(model.network.backbone.fc.weight, fc_before)
    torch.testing.assert_close(model.network.backbone.layer1[0].bn1.running_mean, mean_before)


def test_local_weights_file_is_loaded_and_its_fc_dropped(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(2)
    model = build_model("resnet18", embedding_dim=16, weights=str(path))
    backbone = model.network.backbone
    torch.testing.assert_close(backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert backbone.fc.weight.shape == (16, 512)


def test_weights_without_num_batches_tracked_load(tmp_path):
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    ResNetEmbedding("resnet18", 4, weights=tmp_path / "old.pth")


def test_mismatched_or_missing_weights_name_the_file(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    state["layer5.weight"] = state.pop("layer4.0.conv1.weight")
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ArtifactError, match=rf"{path}.*resnet18.*missing keys \(1\): layer4\.0\.conv1\.weight"
                       r".*unexpected keys \(1\): layer5\.weight.*wrong shapes \(1\): conv1\.weight"):
        build_model("resnet18", 8, weights=str(path))
    with pytest.raises(ArtifactError, match=f"{tmp_path / 'absent.pth'}: file does not exist"):
        build_model("resnet18", 8, weights=str(tmp_path / "absent.pth"))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ArtifactError, match=f"{tmp_path / 'text.pth'}: not a readable torch state_dict"):
        build_model("resnet18", 8, weights=str(tmp_path / "text.pth"))


def test_resnet50_has_2048_d_features():
    model = ResNetEmbedding("resnet50", 8)
    assert model.backbone.fc.in_features == 2048
    assert not any(bn.training for bn in batchnorms(model))
