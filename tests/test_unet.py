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


def test_cross_attention_keys_are_computed_once_per_sampling_run_and_change_nothing():
    from audiodiff.conditioning import Conditioning
    from audiodiff.nets.unet1d import CrossAttention

    torch.manual_seed(0)
    net = UNet1d(in_channels=3, channels=[16, 16], factors=[1, 2], blocks=[1, 1], attentions=[False, True],
                 attention_heads=2, emb_dim=32, cond_dim=4, context_dim=8)
    for p in net.parameters():  # zero-initialised output layers would hide the cross-attention
        torch.nn.init.normal_(p, std=0.2)
    layers = [m for m in net.modules() if isinstance(m, CrossAttention)]
    calls = []
    for layer in layers:
        layer.kv.register_forward_hook(lambda *_: calls.append(1))
    vector, context, mask = torch.randn(2, 4), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    cond = Conditioning(vector, context, mask)
    x = torch.randn(2, 3, 16)
    with torch.inference_mode():
        outs = [net(x, torch.full((2,), t), cond) for t in (0.9, 0.5, 0.1)]
        fresh = net(x, torch.full((2,), 0.1), Conditioning(vector, context, mask))
    assert len(calls) == 2 * len(layers)  # once for `cond`, once for the fresh conditioning
    assert torch.equal(outs[-1], fresh)
    calls.clear()
    net(x, torch.full((2,), 0.5), cond).sum().backward()  # with gradients the memo is neither read nor filled
    assert len(calls) == len(layers) and layers[0].kv[1].weight.grad is not None
