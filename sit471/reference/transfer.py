"""Reference answers for assignment 04: transfer learning with a pretrained network.

Two ways to reuse a network trained on a *source* task for a *target* task:

    approach 1  freeze the pretrained layers, replace the head, train only the new layers
    approach 2  fine-tune every layer, with per-group learning rates: pretrained parameters at
                base_lr, the new layers' weights at 10 x base_lr and their biases at 20 x base_lr

The new layer's rates are those of Caffe's fine-tuning example (models/finetune_flickr_style);
the rest is simpler than Caffe's prototxt. What differs:

    Caffe's prototxt                             finetune_param_groups
    pretrained weights lr_mult 1, biases 2       pretrained weights and biases 1 (all base_lr)
    new layer weights lr_mult 10, biases 20      the same: 10 x and 20 x base_lr
    decay_mult 1 on weights, 0 on biases         no decay setting: the groups set only "lr", so
                                                 an optimizer's weight_decay would apply to every
                                                 parameter, biases included (the course's SGD
                                                 uses no weight decay)

Everything works with any ``torch.nn.Module``. Submodules are named by their dotted path, as in
``model.named_modules()`` (for example ``"classifier.head"`` or ``"features.0"``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Make every parameter of ``module`` (weights, biases, BatchNorm scales...) untrainable.

    Sets ``requires_grad = False``: autograd no longer computes their gradients and an optimizer
    leaves them unchanged. Returns ``module`` (changed in place).
    """
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Make every parameter of ``module`` trainable again (``requires_grad = True``)."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def count_trainable(module: nn.Module) -> int:
    """Number of trainable numbers: the total size of the parameters with requires_grad.

    A parameter shared by two layers counts once (``parameters()`` yields it once).
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding the submodule at dotted path ``name``, and its last name part."""
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        raise ValueError(f"the model has no submodule {name!r}; its submodules are {names}")
    parent_name, _, child = name.rpartition(".")
    return model.get_submodule(parent_name), child


def replace_head(model: nn.Module, name: str, new_module: nn.Module) -> nn.Module:
    """Put ``new_module`` where the submodule at dotted path ``name`` was; return the old one.

    ``replace_head(model, "classifier.head", nn.Linear(64, 5))`` is
    ``model.classifier.head = nn.Linear(64, 5)``. The model is changed in place.
    """
    if not isinstance(new_module, nn.Module):
        raise TypeError(f"new_module must be a torch.nn.Module, got {type(new_module).__name__}")
    parent, child = _parent(model, name)
    old = getattr(parent, child)
    setattr(parent, child, new_module)
    return old


def _resolve(model: nn.Module, new_modules: nn.Module | str | Iterable[nn.Module | str]
             ) -> list[nn.Module]:
    """The new modules as module objects; each must be part of ``model``."""
    if isinstance(new_modules, (nn.Module, str)):
        new_modules = [new_modules]
    inside = {id(m) for m in model.modules()}
    out = []
    for m in new_modules:
        if isinstance(m, str):
            parent, child = _parent(model, m)
            m = getattr(parent, child)
        if not isinstance(m, nn.Module):
            raise TypeError(f"new_modules must hold modules or dotted names, got "
                            f"{type(m).__name__}")
        if id(m) not in inside:
            raise ValueError(f"{type(m).__name__} {m} is not part of the model: replace the "
                             "head first, then pass the module that is now inside the model")
        out.append(m)
    return out


def finetune_param_groups(
    model: nn.Module,
    new_modules: nn.Module | str | Iterable[nn.Module | str],
    base_lr: float,
    weight_mult: float = 10.0,
    bias_mult: float = 20.0,
) -> list[dict]:
    """Optimizer parameter groups for fine-tuning: Caffe's lr_mult 10 / 20 for the new layers,
    but pretrained biases at 1 x base_lr (Caffe: 2) and no decay_mult (see the module docstring).

    new_modules  the layers that were not pretrained (module objects inside ``model``, or their
                 dotted names)
    Returns up to three groups, in this order, leaving out empty ones:
        {"name": "pretrained",  "params": [...], "lr": base_lr}
        {"name": "new_weights", "params": [...], "lr": weight_mult * base_lr}
        {"name": "new_biases",  "params": [...], "lr": bias_mult * base_lr}
    A parameter of a new module is a *bias* when its own name is ``bias``; every other one is a
    weight. Every trainable parameter of ``model`` is in exactly one group; frozen ones
    (requires_grad False) are in none. Pass the list to an optimizer:
    ``torch.optim.SGD(groups, lr=base_lr, momentum=0.9)``.
    """
    if not base_lr > 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if weight_mult < 0 or bias_mult < 0:
        raise ValueError(f"multipliers must be >= 0, got {weight_mult}, {bias_mult}")
    weights: dict[int, nn.Parameter] = {}
    biases: dict[int, nn.Parameter] = {}
    for m in _resolve(model, new_modules):
        for pname, p in m.named_parameters():
            if p.requires_grad and id(p) not in weights and id(p) not in biases:
                target = biases if pname.rpartition(".")[2] == "bias" else weights
                target[id(p)] = p
    pretrained = [p for p in model.parameters()
                  if p.requires_grad and id(p) not in weights and id(p) not in biases]
    groups = [
        {"name": "pretrained", "params": pretrained, "lr": base_lr},
        {"name": "new_weights", "params": list(weights.values()), "lr": weight_mult * base_lr},
        {"name": "new_biases", "params": list(biases.values()), "lr": bias_mult * base_lr},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def adapt_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of the pretrained ``conv`` that takes ``in_channels`` input channels.

    With C the old number of channels and w the old weight (F, C, kh, kw):
    * more channels (in_channels >= C): keep the C pretrained filter slices, give every new
      channel the mean slice w.mean(dim=1), then multiply all slices by C / in_channels;
    * fewer channels: keep the first in_channels slices and add to each an equal share,
      1 / in_channels, of the sum of the dropped slices.
    Either way the slices add up to the old ones, so an input whose channels are all the same
    image gives exactly the old outputs, and a typical input (channels alike, as in colour
    photos) gives outputs of the same scale. Bias, stride, padding, dilation, padding mode,
    dtype and device are copied; ``conv`` is left unchanged. Grouped convolutions are rejected.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"grouped convolutions (groups={conv.groups}) are not supported")
    if int(in_channels) != in_channels or in_channels < 1:
        raise ValueError(f"in_channels must be a positive whole number, got {in_channels}")
    in_channels = int(in_channels)
    w = conv.weight
    C = w.shape[1]
    if in_channels >= C:
        extra = w.mean(dim=1, keepdim=True).expand(-1, in_channels - C, -1, -1)
        new_w = torch.cat([w, extra], dim=1) * (C / in_channels)
    else:
        dropped = w[:, in_channels:].sum(dim=1, keepdim=True)
        new_w = w[:, :in_channels] + dropped / in_channels
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    new.weight.copy_(new_w)
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    return new


def approach1(pretrained: nn.Module, num_classes: int, base_lr: float
              ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Approach 1: a frozen deep copy of ``pretrained`` with a new trainable
    ``classifier.head`` (``nn.Linear``, the old head's inputs, ``num_classes`` outputs), and
    SGD (momentum 0.9) on the head only, at 10x (weights) / 20x (biases) of ``base_lr``."""
    import copy

    model = freeze(copy.deepcopy(pretrained))
    head = nn.Linear(model.classifier.head.in_features, num_classes)
    replace_head(model, "classifier.head", head)
    groups = finetune_param_groups(model, [head], base_lr)
    return model, torch.optim.SGD(groups, lr=base_lr, momentum=0.9)


def approach2(pretrained: nn.Module, num_classes: int, base_lr: float
              ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Approach 2: a trainable deep copy of ``pretrained`` with a new ``classifier.head``, and
    SGD (momentum 0.9) with the fine-tuning groups: pretrained layers at ``base_lr``, the new
    weights at 10x, the new biases at 20x."""
    import copy

    model = unfreeze(copy.deepcopy(pretrained))
    head = nn.Linear(model.classifier.head.in_features, num_classes)
    replace_head(model, "classifier.head", head)
    groups = finetune_param_groups(model, [head], base_lr)
    return model, torch.optim.SGD(groups, lr=base_lr, momentum=0.9)
