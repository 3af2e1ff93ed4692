"""forgetting.models: the two networks match the protocol's layer lists (sections 1-2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetting import models
from forgetting.errors import UserError
from forgetting.models import PreActBlock


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(c_in: int, c_out: int, k: int) -> int:  # no biases anywhere in either net's convs
    return c_in * c_out * k * k


def bn(c: int) -> int:  # weight + bias (running stats are buffers, not parameters)
    return 2 * c


def ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def dawn18_by_hand(width: float = 1.0) -> int:
    """Protocol section 1, layer by layer."""
    c1, c2, c3, c4 = (ch(c, width) for c in (64, 128, 256, 256))
    prep = conv(3, c1, 3)  # Conv3x3(3->64), no BN-ReLU after it (Part 1)

    def block(c_in, c_out, stride):  # bn1(c_in), conv1 3x3, bn2(c_out), conv2 3x3, 1x1 projection if shape changes
        proj = conv(c_in, c_out, 1) if (stride != 1 or c_in != c_out) else 0
        return bn(c_in) + conv(c_in, c_out, 3) + bn(c_out) + conv(c_out, c_out, 3) + proj

    layer1 = block(c1, c1, 1) + block(c1, c1, 1)
    layer2 = block(c1, c2, 2) + block(c2, c2, 1)
    layer3 = block(c2, c3, 2) + block(c3, c3, 1)
    layer4 = block(c3, c4, 2) + block(c4, c4, 1)  # 256 -> 256 but stride 2: still a 1x1 projection
    head = 2 * c4 * 10 + 10  # max-pool ++ avg-pool -> Linear(512->10, bias)
    return prep + layer1 + layer2 + layer3 + layer4 + head


def resnet9_by_hand(width: float = 1.0) -> int:
    """Protocol section 2, layer by layer."""
    c1, c2, c3, c4 = (ch(c, width) for c in (64, 128, 256, 512))

    def conv_bn(c_in, c_out):
        return conv(c_in, c_out, 3) + bn(c_out)

    prep = conv_bn(3, c1)
    layer1 = conv_bn(c1, c2) + 2 * conv_bn(c2, c2)  # conv-BN-ReLU + pool + residual(2 x conv-BN-ReLU)
    layer2 = conv_bn(c2, c3)
    layer3 = conv_bn(c3, c4) + 2 * conv_bn(c4, c4)
    head = c4 * 10  # Linear(512->10, no bias); the x0.125 scale has no parameters
    return prep + layer1 + layer2 + layer3 + head


def test_hand_counts_are_the_documented_totals():
    # the arithmetic above, written out for full width:
    # dawn18: prep 1,728; layer1 2 x 73,984; layer2 229,760 + 295,424; layer3 918,272 + 1,180,672;
    #         layer4 1,246,208 + 1,180,672; head 5,130
    assert 1728 + 2 * 73984 + 229760 + 295424 + 918272 + 1180672 + 1246208 + 1180672 + 5130 == 5_205_834
    assert dawn18_by_hand() == 5_205_834
    # resnet9: prep 1,856; layer1 73,984 + 2 x 147,712; layer2 295,424; layer3 1,180,672 + 2 x 2,360,320; head 5,120
    assert 1856 + 73984 + 2 * 147712 + 295424 + 1180672 + 2 * 2360320 + 5120 == 6_573_120
    assert resnet9_by_hand() == 6_573_120


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25, 0.125])
def test_dawn18_parameter_count(width):
    assert n_params(models.build("dawn18", width)) == dawn18_by_hand(width)


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25, 0.125])
def test_resnet9_parameter_count(width):
    assert n_params(models.build("resnet9", width)) == resnet9_by_hand(width)


def test_full_width_counts():
    assert n_params(models.build("dawn18")) == 5_205_834
    assert n_params(models.build("resnet9")) == 6_573_120


def test_dawn18_structure():
    m = models.dawn18()
    blocks = [b for b in m if isinstance(b, PreActBlock)]
    assert len(blocks) == 8
    assert [b.conv1.stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 256, 256]
    assert [b.proj is not None for b in blocks] == [False, False, True, False, True, False, True, False]
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    assert all(b.eps == 1e-5 and b.momentum == 0.1 for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    assert isinstance(m[0], nn.Conv2d) and isinstance(m[1], PreActBlock)  # prep: conv only


def _pair(shortcut_a, shortcut_b, c_in=8, c_out=8, stride=1):
    torch.manual_seed(0)
    a = PreActBlock(c_in, c_out, stride, shortcut_a, "uniform")
    b = PreActBlock(c_in, c_out, stride, shortcut_b, "uniform")
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("train_mode", [True, False])
def test_shortcut_identity_block_page_vs_johnson(train_mode):
    page, johnson = _pair("page", "johnson")
    page.train(train_mode), johnson.train(train_mode)
    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_p, out_j = page(x), johnson(x)
        o = torch.relu(page.bn1(x))
    assert not torch.allclose(out_p, out_j)
    # the only difference is the added term: Page adds o = relu(bn1(x)), Johnson adds the raw x
    torch.testing.assert_close(out_p - out_j, o - x, rtol=1e-5, atol=1e-5)


def test_shortcut_projection_block_unaffected():
    page, johnson = _pair("page", "johnson", 8, 16, 2)
    x = torch.randn(4, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(page(x), johnson(x))


def test_shortcut_changes_whole_net_output():
    torch.manual_seed(0)
    page = models.dawn18(0.125, "page")
    johnson = models.dawn18(0.125, "johnson")
    johnson.load_state_dict(page.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(page(x), johnson(x))
    with pytest.raises(UserError):
        models.dawn18(shortcut="raw")


def _bn_weights(m: nn.Module) -> torch.Tensor:
    return torch.cat([b.weight.detach() for b in m.modules() if isinstance(b, nn.BatchNorm2d)])


def _bn_biases(m: nn.Module) -> torch.Tensor:
    return torch.cat([b.bias.detach() for b in m.modules() if isinstance(b, nn.BatchNorm2d)])


@pytest.mark.parametrize("net", models.NETS)
def test_bn_init(net):
    torch.manual_seed(0)
    uni = _bn_weights(models.build(net, 0.25, bn_init="uniform"))
    assert (uni >= 0).all() and (uni <= 1).all()
    assert not (uni == 1).all()
    assert 0.35 < float(uni.mean()) < 0.65 and float(uni.std()) > 0.2  # U[0,1]: mean 0.5, sd 0.29
    ones = models.build(net, 0.25, bn_init="ones")
    assert (_bn_weights(ones) == 1).all()
    assert (_bn_biases(ones) == 0).all() and (_bn_biases(models.build(net, 0.25, bn_init="uniform")) == 0).all()


def test_bn_init_defaults_are_faithful():
    assert not (_bn_weights(models.build("dawn18", 0.25)) == 1).all()  # PyTorch 0.4's U[0,1]
    assert (_bn_weights(models.build("resnet9", 0.25)) == 1).all()  # Part 4: ones


@pytest.mark.parametrize("net", models.NETS)
def test_width_quarter_channels(net):
    full = [c.out_channels for c in models.build(net).modules() if isinstance(c, nn.Conv2d)]
    quarter = [c.out_channels for c in models.build(net, 0.25).modules() if isinstance(c, nn.Conv2d)]
    assert quarter[0] == 16
    assert quarter == [c // 4 for c in full]
    first = next(c for c in models.build(net, 0.125).modules() if isinstance(c, nn.Conv2d))
    assert first.out_channels == 8 and first.in_channels == 3


@pytest.mark.parametrize("net", models.NETS)
@pytest.mark.parametrize("width", [1.0, 0.125])
def test_forward_shape(net, width):
    m = models.build(net, width)
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_build_validation():
    with pytest.raises(UserError):
        models.build("resnet18")
    with pytest.raises(UserError):
        models.build("dawn18", width=0)
    with pytest.raises(UserError):
        models.build("dawn18", width=-1)


def dawn18_flops_by_hand() -> int:
    """2 x multiply-adds of every conv and the linear layer, at 32/16/8/4 pixels per side."""
    total = 2 * conv(3, 64, 3) * 32 * 32
    total += 4 * 2 * conv(64, 64, 3) * 32 * 32  # layer 1
    for c_in, c_out, side in ((64, 128, 16), (128, 256, 8), (256, 256, 4)):  # layers 2-4 (stride 2 first)
        total += 2 * (conv(c_in, c_out, 3) + conv(c_in, c_out, 1) + 3 * conv(c_out, c_out, 3)) * side * side
    return total + 2 * 512 * 10


def test_forward_flops_dawn18():
    m = models.build("dawn18")
    m.train()
    flops = models.forward_flops(m)
    assert 0.8e9 <= flops <= 1.0e9  # protocol: about 0.92 GFLOPs
    assert flops == dawn18_flops_by_hand()
    assert m.training, "forward_flops must restore the training mode"


def test_forward_flops_resnet9():
    flops = models.forward_flops(models.build("resnet9"))
    assert 0.7e9 <= flops <= 0.85e9  # protocol: about 0.76 GFLOPs
