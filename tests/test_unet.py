import pytest
import torch

from audiodiff.nets import UNet1d


@pytest.mark.parametrize("frames", [1, 7, 63, 64, 101])
def test_output_shape_matches_input_for_any_length(frames):
    net = UNet1d(in_channels=5, channels=[16, 32, 32], factors=[1, 2, 2], blocks=[1, 1, 1],
                 attentions=[False, False, True], attention_heads=2, emb_dim=32, cond_dim=8)
    x = torch.randn(3, 5, frames)
    out = net(x, torch.rand(3), torch.randn(3, 8))
    assert out.shape == x.shape


def test_conditioning_changes_the_output():
    torch.manual_seed(0)
    net = UNet1d(in_channels=2, channels=[16, 16], factors=[1, 2], blocks=[1, 1], attentions=[False, False],
                 attention_heads=2, emb_dim=32, cond_dim=4)
    for p in net.parameters():  # zero-initialised output layers would hide the condition's effect
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(1, 2, 16), torch.full((1,), 0.5)
    assert not torch.allclose(net(x, t, torch.zeros(1, 4)), net(x, t, torch.ones(1, 4)))
    with pytest.raises(ValueError, match="conditioning vector"):
        net(x, t)


def test_per_level_lists_must_agree():
    with pytest.raises(ValueError, match="one entry per level"):
        UNet1d(in_channels=1, channels=[8, 16], factors=[1, 2, 2], blocks=[1, 1], attentions=[False, False])
