"""sit471.reference.transfer: freezing, counting, replacing the head, fine-tuning parameter
groups (checked through a real optimizer step) and adapting a first convolution's channels."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from sit471.reference.transfer import (
    adapt_in_channels,
    count_trainable,
    finetune_param_groups,
    freeze,
    replace_head,
    unfreeze,
)


def make_model(seed: int = 0) -> nn.Module:
    """A nested model with convs, BatchNorm, a bias-free layer and a dotted-path head."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                               nn.Conv2d(4, 6, 3, bias=False), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        classifier=nn.Sequential(OrderedDict(fc=nn.Linear(6, 5), relu=nn.ReLU(),
                                             head=nn.Linear(5, 7)))))


def sizes(model: nn.Module) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters()}


def test_freeze_unfreeze_and_count():
    model = make_model()
    total = sum(sizes(model).values())
    assert total == (3 * 4 * 9 + 4) + (4 + 4) + 4 * 6 * 9 + (6 * 5 + 5) + (5 * 7 + 7)
    assert count_trainable(model) == total
    assert freeze(model.features) is model.features
    assert count_trainable(model) == (6 * 5 + 5) + (5 * 7 + 7)
    assert all(not p.requires_grad for p in model.features.parameters())  # BatchNorm included
    unfreeze(model.features[1])
    assert count_trainable(model) == 8 + 35 + 42
    freeze(model)
    assert count_trainable(model) == 0
    unfreeze(model)
    assert count_trainable(model) == total


def test_count_trainable_counts_a_shared_parameter_once():
    lin = nn.Linear(3, 3)
    assert count_trainable(nn.Sequential(lin, nn.ReLU(), lin)) == 12


def test_replace_head_by_dotted_path():
    model = make_model()
    new = nn.Linear(5, 2)
    old = replace_head(model, "classifier.head", new)
    assert isinstance(old, nn.Linear) and old.out_features == 7
    assert model.classifier.head is new
    assert model(torch.zeros(2, 3, 6, 6)).shape == (2, 2)
    replace_head(model, "features.0", nn.Conv2d(1, 4, 3, padding=1))
    assert model(torch.zeros(2, 1, 6, 6)).shape == (2, 2)
    assert "classifier.head" not in dict(model.named_parameters())  # no stray attribute


@pytest.mark.parametrize("name", ["head", "classifier.heads", "classifier.head.weight", ""])
def test_replace_head_rejects_a_missing_name(name):
    with pytest.raises(ValueError, match="has no submodule"):
        replace_head(make_model(), name, nn.Linear(5, 2))


def test_replace_head_rejects_a_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        replace_head(make_model(), "classifier.head", torch.zeros(3))


def lr_of(groups: list[dict]) -> dict[int, float]:
    """id(parameter) -> learning rate; fails if a parameter appears twice."""
    seen: dict[int, float] = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in seen, "a parameter appears in two groups"
            seen[id(p)] = g["lr"]
    return seen


def test_param_groups_rates_counts_and_no_duplicates():
    model = make_model()
    replace_head(model, "classifier.head", nn.Linear(5, 3))
    groups = finetune_param_groups(model, [model.classifier.head], base_lr=0.01)
    assert [g["name"] for g in groups] == ["pretrained", "new_weights", "new_biases"]
    assert [len(g["params"]) for g in groups] == [7, 1, 1]
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.1, 0.2])
    rates = lr_of(groups)
    assert set(rates) == {id(p) for p in model.parameters()}  # none missing
    assert groups[1]["params"][0] is model.classifier.head.weight
    assert groups[2]["params"][0] is model.classifier.head.bias
    # names work as well as modules, and custom multipliers
    by_name = finetune_param_groups(model, ["classifier.head"], 0.001, weight_mult=2, bias_mult=3)
    assert [g["lr"] for g in by_name] == pytest.approx([0.001, 0.002, 0.003])


def test_param_groups_leave_frozen_parameters_out():
    model = make_model()
    freeze(model.features)
    groups = finetune_param_groups(model, model.classifier.head, base_lr=0.1)
    rates = lr_of(groups)
    assert set(rates) == {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(p.numel() for g in groups for p in g["params"]) == count_trainable(model)
    freeze(model.classifier.fc)  # only the new layer left: the pretrained group disappears
    groups = finetune_param_groups(model, model.classifier.head, base_lr=0.1)
    assert [g["name"] for g in groups] == ["new_weights", "new_biases"]


def test_param_groups_new_batchnorm_and_bias_free_layers():
    model = make_model()
    head = nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2))
    replace_head(model, "classifier.head", head)
    groups = {g["name"]: g for g in finetune_param_groups(model, [head], 1.0)}
    assert {id(p) for p in groups["new_weights"]["params"]} == {
        id(head[0].weight), id(head[1].weight), id(head[2].weight)}
    assert {id(p) for p in groups["new_biases"]["params"]} == {id(head[1].bias),
                                                               id(head[2].bias)}


def test_param_groups_reject_modules_outside_the_model():
    model = make_model()
    with pytest.raises(ValueError, match="not part of the model"):
        finetune_param_groups(model, [nn.Linear(5, 3)], 0.01)
    with pytest.raises(ValueError, match="has no submodule"):
        finetune_param_groups(model, ["classifier.nope"], 0.01)
    with pytest.raises(ValueError, match="base_lr"):
        finetune_param_groups(model, [model.classifier.head], 0.0)


def step_changes(model: nn.Module, groups: list[dict]) -> dict[str, float]:
    """name -> size of the change of each parameter after one plain SGD step on a fixed batch,
    divided by the size of its gradient (so it is the effective learning rate); None for a
    parameter without a gradient (a conv bias followed by BatchNorm gets exactly zero)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(groups, lr=123.0)  # the default rate must never be used
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    out = {}
    for n, p in model.named_parameters():
        change = (p.detach() - before[n]).norm().item()
        grad = 0.0 if p.grad is None else p.grad.norm().item()
        out[n] = None if grad < 1e-6 else change / grad
    return out


def test_one_step_moves_each_parameter_at_its_own_rate():
    model = make_model()
    replace_head(model, "classifier.head", nn.Linear(5, 3))
    changes = step_changes(model, finetune_param_groups(model, [model.classifier.head], 0.01))
    for name, rate in changes.items():
        expected = 0.1 if name == "classifier.head.weight" else (
            0.2 if name == "classifier.head.bias" else 0.01)
        if rate is not None:
            assert rate == pytest.approx(expected, rel=1e-3), name
    assert sum(rate is None for rate in changes.values()) == 1  # only features.0.bias


def test_one_step_leaves_frozen_parameters_unchanged():
    model = make_model()
    freeze(model)
    replace_head(model, "classifier.head", nn.Linear(5, 3))
    changes = step_changes(model, finetune_param_groups(model, [model.classifier.head], 0.01))
    assert {n for n, c in changes.items() if c} == {"classifier.head.weight",
                                                        "classifier.head.bias"}


@pytest.mark.parametrize("new_channels", [4, 5, 6])
def test_adapt_in_channels_keeps_outputs_for_an_input_with_mean_channels(new_channels):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    # a "typical" colour input: three channels that are alike (one image plus a little noise)
    base = torch.rand(4, 1, 9, 9)
    x = base + 0.05 * torch.randn(4, 3, 9, 9)
    extra = x.mean(dim=1, keepdim=True).expand(-1, new_channels - 3, -1, -1)
    new = adapt_in_channels(conv, new_channels)
    assert isinstance(new, nn.Conv2d) and new.in_channels == new_channels
    assert (new.stride, new.padding, new.kernel_size) == (conv.stride, conv.padding,
                                                          conv.kernel_size)
    with torch.no_grad():
        old_out, new_out = conv(x), new(torch.cat([x, extra], dim=1))
        assert torch.allclose(new.weight[:, :3], conv.weight * 3 / new_channels)
        assert torch.equal(new.bias, conv.bias)
        rel = (new_out - old_out).norm() / old_out.norm()
        assert rel < 0.05, rel
        same = base.expand(-1, 3, -1, -1)  # identical channels: exactly the same outputs
        torch.testing.assert_close(new(base.expand(-1, new_channels, -1, -1)), conv(same))
    assert new.weight.requires_grad and new.weight.data_ptr() != conv.weight.data_ptr()


@pytest.mark.parametrize("new_channels", [1, 2, 3])
def test_adapt_in_channels_to_fewer_or_equal_channels(new_channels):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, bias=False)
    new = adapt_in_channels(conv, new_channels)
    assert new.bias is None and new.in_channels == new_channels
    base = torch.rand(2, 1, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(new(base.expand(-1, new_channels, -1, -1)),
                                   conv(base.expand(-1, 3, -1, -1)))
        if new_channels == 1:
            torch.testing.assert_close(new.weight, conv.weight.sum(dim=1, keepdim=True))
        if new_channels == 3:
            torch.testing.assert_close(new.weight, conv.weight)


def test_adapt_in_channels_bad_arguments():
    with pytest.raises(TypeError, match="Conv2d"):
        adapt_in_channels(nn.Linear(3, 3), 4)
    with pytest.raises(ValueError, match="positive"):
        adapt_in_channels(nn.Conv2d(3, 4, 3), 0)
    with pytest.raises(ValueError, match="grouped"):
        adapt_in_channels(nn.Conv2d(4, 4, 3, groups=2), 6)


def test_param_groups_multipliers_and_what_differs_from_caffe():
    """The multipliers as they are: pretrained weights and biases 1x, new weights 10x, new
    biases 20x, no weight-decay setting. Caffe's prototxt gives pretrained biases 2x and biases
    decay_mult 0; the docstring must say so rather than claim Caffe's recipe."""
    import sit471.reference.transfer as transfer

    model = make_model()
    head = model.classifier.head
    groups = finetune_param_groups(model, [head], 0.01)
    mult = {id(p): g["lr"] / 0.01 for g in groups for p in g["params"]}
    fc = model.classifier.fc
    assert mult[id(fc.weight)] == mult[id(fc.bias)] == mult[id(model.features[0].bias)] == 1
    assert mult[id(head.weight)] == 10 and mult[id(head.bias)] == 20
    assert all(set(g) <= {"name", "params", "lr"} for g in groups)  # no weight_decay
    doc = " ".join(transfer.__doc__.split())
    assert "pretrained weights lr_mult 1, biases 2 pretrained weights and biases 1" in doc
    assert "decay_mult 1 on weights, 0 on biases no decay setting" in doc
    assert "Caffe's lr_mult recipe" not in finetune_param_groups.__doc__
    assert "pretrained biases at 1 x base_lr (Caffe: 2)" in " ".join(
        finetune_param_groups.__doc__.split())


@pytest.mark.parametrize("which", ["approach1", "approach2"])
def test_approaches_copy_replace_the_head_and_build_the_groups(which):
    from sit471.reference import transfer

    pretrained = make_model()
    freeze(pretrained.features)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    model, opt = getattr(transfer, which)(pretrained, 3, 0.01)
    assert model is not pretrained
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items())
    assert model.classifier.head.out_features == 3
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    head = model.classifier.head
    assert rates.pop(id(head.weight)) == pytest.approx(0.1)
    assert rates.pop(id(head.bias)) == pytest.approx(0.2)
    if which == "approach1":
        assert not rates and count_trainable(model) == head.weight.numel() + 3
    else:
        assert len(rates) == len(list(model.parameters())) - 2
        assert set(rates.values()) == {0.01}
    assert {g["momentum"] for g in opt.param_groups} == {0.9}
