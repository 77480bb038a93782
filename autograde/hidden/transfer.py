"""Hidden tests of assignment 04 (transfer learning), decided by the grader.

The answers of this assignment are structures: which parameters are frozen, where a new
module went, which optimizer group holds which parameter at which rate, a new convolution.
Each probe builds a network from the case (sizes, a torch seed, the pretrained source
network that students also have), calls the student's function on it and sends back a
plain description: parameter names, shapes, ``requires_grad``, per-group learning rates with
their parameter names, outputs of a forward pass on an input the grader chose. The check
builds the same network here (the same expression, the same seed), applies
``sit471.reference.transfer`` and compares. ``approach1`` / ``approach2`` are also checked
by training: the probe trains the student's model with the student's optimizer on images
the grader picked and sends the trained weights; the grader loads them into its own
network and measures the accuracy on the target test set, with today's thresholds.

The checks also cover what the visible tests check (the network given left unchanged,
ValueError / TypeError on bad arguments, defaults of the multipliers, settings of the new
convolution), so a kernel that skips its visible tests gains nothing.

Keep each ``*_net`` builder the same expression as its probe in the notebook.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial

import numpy as np
import torch
from torch import nn

from autograde.verdict import HiddenTests
from sit471.checks import check_array
from sit471.reference import transfer as ref
from sit471.transfer import load_source_cnn, small_cnn, target_data

hidden = HiddenTests()


def _int(rng: np.random.Generator, low: int, high: int) -> int:
    """A Python int in [low, high) (case values must be plain numbers)."""
    return int(rng.integers(low, high))


def _names(names: list[str], k: int = 4) -> str:
    return ", ".join(names[:k]) + (" ..." if len(names) > k else "")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch seeded as the probe seeds it, without touching this process's own stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _freeze_path(net: nn.Module, path: str) -> None:
    ref.freeze(net.get_submodule(path))


def _call(fn: str, path: str) -> str:
    return f"{fn}(net)" if not path else f"{fn}(net[{path!r}])"


# ----------------------------------------------------------------------------- freeze


def freeze_net(c: int, h: int, k: int) -> nn.Sequential:
    """The network of the freeze probe: nested blocks, a bias-free conv, BatchNorm, LayerNorm."""
    return nn.Sequential(nn.Sequential(nn.Conv2d(c, h, 3, bias=False), nn.BatchNorm2d(h)),
                         nn.Sequential(nn.Linear(k, k), nn.LayerNorm(k), nn.Linear(k, 2)))


_FREEZE_PATHS = ["", "0", "1", "0.0", "0.1", "1.0", "1.1", "1.2"]


@hidden.cases("test_freeze")
def _(rng):
    def sizes():
        return dict(c=_int(rng, 1, 4), h=_int(rng, 2, 6), k=_int(rng, 3, 7))

    order = ["0", "1.1", "0.1", "1"]
    fixed = [["freeze", p] for p in order] + [["unfreeze", p] for p in order]
    drawn = [["freeze", ""], ["unfreeze", str(rng.choice(["1", "1.2", "0"]))]] + [
        [str(rng.choice(["freeze", "unfreeze"])), str(rng.choice(_FREEZE_PATHS))]
        for _ in range(6)]
    return [dict(**sizes(), ops=fixed), dict(**sizes(), ops=drawn)]


def _kinds(names: list[str]) -> str:
    """What a freeze that left ``names`` out forgot, in plain words."""
    biases = [n for n in names if n.endswith("bias") and n[:-4] + "weight" not in names]
    norm = [n for n in names if n.startswith(("0.1.", "1.1.")) and n not in biases]
    if len(norm) + len(biases) < len(names):
        return "the parameters of nested submodules (module.parameters() recurses)"
    return " and ".join((["biases"] if biases else [])
                        + (["the BatchNorm / LayerNorm parameters"] if norm else []))


def _count(k: int) -> str:
    return f"{k} parameter" + ("s are" if k != 1 else " is")


@hidden.check("test_freeze")
def _(case, got):
    net = freeze_net(case["c"], case["h"], case["k"])
    names = [n for n, _ in net.named_parameters()]
    assert got["names"] == names, (
        f"the network's parameters became {_names(got['names'])}, expected {_names(names)}: "
        "freeze and unfreeze only set requires_grad")
    fns = {"freeze": ref.freeze, "unfreeze": ref.unfreeze}
    for (fn, path), flags, returned in zip(case["ops"], got["flags"], got["same"], strict=True):
        part = net.get_submodule(path)
        fns[fn](part)
        inside = {n for n, _ in part.named_parameters(prefix=path)}
        want = [p.requires_grad for p in net.parameters()]
        call = _call(fn, path)
        if flags != want:
            bad = [n for n, f, w in zip(names, flags, want, strict=True) if f != w]
            outside = [n for n in bad if n not in inside]
            if outside:
                raise AssertionError(f"{call} also changed {_names(outside)}, which is not part "
                                     f"of the module it was given: {fn} only that module")
            if fn == "freeze":
                raise AssertionError(
                    f"after {call} {_count(len(bad))} still trainable: {_names(bad)}. "
                    f"freeze must cover {_kinds(bad)} too: loop over module.parameters()")
            raise AssertionError(
                f"after {call} {_count(len(bad))} still frozen: {_names(bad)}. unfreeze "
                f"must cover {_kinds(bad)} too: loop over module.parameters()")
        assert returned, (f"{call} should return the module it was given (did you forget "
                          "`return`?)")


# ----------------------------------------------------------------------------- count_trainable


def count_net(arch: str, sizes: list[int]) -> nn.Module:
    """The network of the count probe: small_cnn, or a net with BatchNorm and a shared layer."""
    if arch == "cnn":
        return small_cnn(sizes[0])
    a, b, c, d, s = sizes
    shared = nn.Linear(s, s)
    return nn.Sequential(nn.Conv2d(a, b, 2), nn.BatchNorm2d(b), nn.Conv2d(b, c, 1, bias=False),
                         nn.Flatten(), nn.Linear(d, 3), shared, nn.ReLU(), shared)


@hidden.cases("test_count_trainable")
def _(rng):
    sizes = [_int(rng, 2, 6), _int(rng, 2, 7), _int(rng, 1, 4), _int(rng, 4, 12), _int(rng, 2, 6)]
    order = [str(p) for p in rng.permutation(["1", "0", "4", "5", "2"])[:4]]
    cnn_order = [str(p) for p in rng.permutation(["features", "classifier.fc1",
                                                  "features.conv2"])[:2]]
    return [dict(arch="tree", sizes=sizes, order=order),
            dict(arch="cnn", sizes=[_int(rng, 2, 10)], order=cnn_order)]


@hidden.check("test_count_trainable")
def _(case, got):
    net = count_net(case["arch"], case["sizes"])
    order = case["order"]
    assert isinstance(got, list) and len(got) == len(order) + 1, (
        "the probe should send one count per step")
    shared = net[5] if case["arch"] == "tree" else None
    for k, value in enumerate(got):
        if k:
            _freeze_path(net, order[k - 1])
        want = ref.count_trainable(net)
        where = "nothing frozen" if k == 0 else f"frozen: {', '.join(map(repr, order[:k]))}"
        assert value is not None, "count_trainable returned None: did you forget `return`?"
        assert np.ndim(value) == 0 and not isinstance(value, (str, dict)), (
            f"count_trainable should return one whole number, got {type(value).__name__}")
        value = float(value)
        if value == want:
            continue
        params = list(net.parameters())
        hint = ""
        if value in (len(params), sum(p.requires_grad for p in params)):
            hint = ": that is the number of parameter tensors; count entries with p.numel()"
        elif value == sum(p.numel() for p in params):
            hint = ": count only the parameters with requires_grad"
        elif shared is not None and value == want + ref.count_trainable(shared):
            hint = ": a layer used twice must count once: sum over module.parameters()"
        raise AssertionError(f"count_trainable gave {value:g}, expected {want} ({where}){hint}")


# ----------------------------------------------------------------------------- replace_head


def head_tree() -> nn.Sequential:
    """The nested network of the replace_head probe."""
    return nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(),
                                                                         nn.Linear(3, 3))),
                         nn.Linear(3, 3))


@hidden.cases("test_replace_head")
def _(rng):
    cases = [dict(kind="path", arch="tree", path=p)
             for p in ["0.1.1", "1", "0.0", "0", str(rng.choice(["0.1", "0.1.0"]))]]
    k = _int(rng, 2, 10)
    cases.append(dict(kind="forward", arch="cnn", path="classifier.head", seed=_int(rng, 0, 2**31),
                      size=k, x=rng.random((3, 1, 8, 8)).astype(np.float32)))
    c = _int(rng, 2, 5)
    cases.append(dict(kind="forward", arch="cnn", path="features.conv1", seed=_int(rng, 0, 2**31),
                      size=c, x=rng.random((2, c, 8, 8)).astype(np.float32)))
    cases += [dict(kind="bad", arch="tree", path=p) for p in ["2", "0.1.2", "0.0.weight"]]
    cases += [dict(kind="bad", arch="cnn", path=p)
              for p in ["head", "classifier.heads", "classifier.head.weight",
                        f"features.conv{_int(rng, 4, 9)}"]]
    cases.append(dict(kind="type", arch="cnn", path="classifier.head"))
    return cases


@hidden.check("test_replace_head")
def _(case, got):
    kind, path = case["kind"], case["path"]
    call = f"replace_head(model, {path!r}, new)"
    message = str(got.get("message", ""))[:150]
    if kind == "bad":
        if got.get("raised") == "ValueError":
            assert path in message, f"the ValueError for {path!r} should name it, got: {message}"
            return
        if "raised" in got:
            raise AssertionError(f"{call} raised {got['raised']}: {message}; raise a ValueError "
                                 "that names the missing submodule")
        raise AssertionError(f"{call} should raise ValueError: the model has no submodule "
                             f"{path!r}")
    if kind == "type":
        how = f"got {got['raised']}" if "raised" in got else "nothing was raised"
        assert got.get("raised") == "TypeError", (
            f"replace_head with a tensor instead of a module should raise TypeError, {how}")
        return
    if "raised" in got:
        raise AssertionError(f"{call} raised {got['raised']}: {message} (names can be nested "
                             "deeper: find the parent with model.get_submodule)")
    with _seeded(case.get("seed", 0)):
        net = small_cnn(5) if case["arch"] == "cnn" else head_tree()
        if kind == "forward":
            size = case["size"]
            new = nn.Linear(64, size) if path == "classifier.head" else nn.Conv2d(size, 16, 3,
                                                                                 padding=1)
        else:
            new = nn.Identity()
    old = ref.replace_head(net, path, new)
    dotted = [c for c in got["children"] if "." in c]
    assert not dotted, (
        f"after {call} the model has a child named {dotted[0]!r}: setattr(model, {path!r}, new) "
        "adds an attribute named so; set the last name part on the parent module instead")
    assert got["placed"], f"after {call} model.get_submodule({path!r}) is not the new module"
    modules = [n for n, _ in net.named_modules()]
    assert got["modules"] == modules, (
        f"after {call} the submodules are {_names(got['modules'], 6)}, expected "
        f"{_names(modules, 6)}")
    assert got["old"] == str(old), (f"{call} should return the old module {str(old)[:40]}, "
                                    f"got {str(got['old'])[:40]}")
    params = [n for n, _ in net.named_parameters()]
    assert got["params"] == params, (
        f"after {call} the parameters are {_names(got['params'])}, expected {_names(params)}: "
        "the old module's parameters must leave the network")
    if kind == "forward":
        with torch.no_grad():
            expected = net(torch.as_tensor(case["x"])).numpy()
        check_array(got["out"], expected, f"the output after {call} on the grader's input",
                    rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- param groups


def groups_net(arch: str, sizes: list[int]) -> nn.Module:
    """The network of the parameter-group probe."""
    if arch == "cnn":
        return small_cnn(sizes[0])
    c, h, m = sizes
    return nn.Sequential(nn.Conv2d(c, h, 3, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                         nn.Flatten(),
                         nn.Sequential(nn.Linear(16, m), nn.BatchNorm1d(m), nn.Linear(m, 3)))


@hidden.cases("test_finetune_param_groups")
def _(rng):
    def sizes():
        return [_int(rng, 1, 4), _int(rng, 2, 6), _int(rng, 2, 8)]

    def base():
        return float(10 ** rng.uniform(-4, -1))

    def mults():
        return [float(rng.choice([2.0, 3.0, 5.0, 10.0])), float(rng.choice([0.5, 4.0, 20.0]))]

    new = ["4.1", "4.2"]
    return [
        dict(arch="tree", sizes=sizes(), new=new, base=0.003, mults=None, frozen=[]),
        dict(arch="tree", sizes=sizes(), new=new, base=0.1, mults=[2.0, 0.5], frozen=["1"]),
        dict(arch="tree", sizes=sizes(), new=new, base=1e-4, mults=None, frozen=["1", "4.2"]),
        # a new block with nested layers: its biases are named "0.bias", "2.bias"
        dict(arch="tree", sizes=sizes(), new=["4"], base=base(), mults=mults(),
             frozen=[str(rng.choice(["1", "0", "4.1"]))]),
        dict(arch="cnn", sizes=[_int(rng, 2, 10)], new=["classifier.head"], base=base(),
             mults=None, frozen=[str(rng.choice(["features", "features.conv1"]))]),
        dict(arch="cnn", sizes=[_int(rng, 2, 10)], new=["classifier.head", "features.conv1"],
             base=base(), mults=mults(), frozen=[]),
        dict(arch="tree", sizes=sizes(), new=["4.2"], base=0.01, mults=None, frozen=[],
             copied=True),
    ]


def _lr_hint(name: str, got: float, want: float, base: float, mults: tuple[float, float]
             ) -> str:
    """Why ``name`` may have the rate ``got`` instead of ``want``, in plain words."""
    wm, bm = mults
    if name.endswith("bias") and np.isclose(got, wm * base) and np.isclose(want, bm * base):
        return (f": new biases get bias_mult ({bm:g}x), not weight_mult ({wm:g}x), nested ones "
                "(named like '0.bias') too")
    if name.endswith("weight") and np.isclose(got, bm * base) and np.isclose(want, wm * base):
        return f": new weights get weight_mult ({wm:g}x); bias_mult ({bm:g}x) is for biases"
    if np.isclose(want, base) and (np.isclose(got, wm * base) or np.isclose(got, bm * base)):
        return ": pretrained parameters get base_lr, new ones the multiplied rates"
    if np.isclose(got, base):
        return ": this parameter belongs to a new module, so it gets a multiplied rate"
    return ""


def check_rates(groups: list[dict], expected: dict[str, float], what: str, base: float,
                mults: tuple[float, float]) -> None:
    """``groups`` as the probes describe them ({"lr", "params": [names]}) against
    {parameter name: learning rate} of the reference."""
    got: dict[str, float] = {}
    for g in groups:
        for n in g["params"]:
            assert not n.startswith("("), (
                f"a group holds a parameter that is not part of the model ({what})")
            assert n not in got, (f"{n} appears in two groups (lr {got[n]:g} and {g['lr']:g}): "
                                  "leave the new module's parameters out of the pretrained group")
            got[n] = float(g["lr"])
    missing = sorted(set(expected) - set(got))
    assert not missing, f"these trainable parameters are in no group: {_names(missing)} ({what})"
    extra = sorted(set(got) - set(expected))
    assert not extra, (f"frozen parameters must be left out of the groups, but these are in: "
                       f"{_names(extra)} ({what})")
    for n, lr in expected.items():
        if not np.isclose(got[n], lr, rtol=1e-9, atol=0):
            raise AssertionError(f"{n} has lr {got[n]:g}, expected {lr:g}"
                                 f"{_lr_hint(n, got[n], lr, base, mults)} ({what})")


@hidden.check("test_finetune_param_groups")
def _(case, got):
    net = groups_net(case["arch"], case["sizes"])
    for path in case["frozen"]:
        _freeze_path(net, path)
    mods = [net.get_submodule(p) for p in case["new"]]
    mults = case["mults"]
    what = (f"base_lr {case['base']:.3g}, "
            + ("default mults" if mults is None else f"mults {mults[0]:g}/{mults[1]:g}")
            + f", new {'/'.join(case['new'])}, frozen {'/'.join(case['frozen']) or 'none'}")
    if case.get("copied"):
        if got.get("raised") == "ValueError":
            return
        how = f"got {got['raised']}" if "raised" in got else "nothing was raised"
        raise AssertionError(f"a copy of a layer is not part of the model: expected ValueError, "
                             f"{how}")
    if "raised" in got:
        raise AssertionError(f"finetune_param_groups raised {got['raised']}: "
                             f"{str(got.get('message'))[:120]} ({what})")
    assert "malformed" not in got, (
        f"each group must be a dict with 'params' and 'lr', got {str(got['malformed'])[:80]}")
    kw = {} if mults is None else dict(weight_mult=mults[0], bias_mult=mults[1])
    names = {id(p): n for n, p in net.named_parameters()}
    expected = {names[id(p)]: g["lr"] for g in ref.finetune_param_groups(net, mods, case["base"],
                                                                          **kw)
                for p in g["params"]}
    check_rates(got["groups"], expected, what, case["base"],
                (10.0, 20.0) if mults is None else (mults[0], mults[1]))
    assert not got["sgd"], f"torch.optim.SGD rejects the groups: {str(got['sgd'])[:120]}"


# ----------------------------------------------------------------------------- approaches


@lru_cache(maxsize=1)
def _target_test() -> tuple[np.ndarray, np.ndarray]:
    data = target_data()
    return data["x_test"], data["y_test"]


#: (frozen parts of the network given, accuracy threshold after training) per approach.
_APPROACHES = {"approach1": ([], 0.80), "approach2": (["features"], 0.80)}


def _approach_cases(rng: np.random.Generator, which: str) -> list[dict]:
    frozen, _ = _APPROACHES[which]
    data = target_data(per_class=20, seed=_int(rng, 0, 2**31))
    # another number of classes than the network given has (and than the visible test uses)
    structural = dict(seed=_int(rng, 0, 2**31), pre=_int(rng, 6, 10), classes=_int(rng, 2, 5),
                      base_lr=float(rng.uniform(1e-3, 3e-2)),
                      frozen=[] if which == "approach1" else [""],
                      x=rng.random((3, 1, 28, 28)).astype(np.float32), steps=0)
    trained = dict(seed=_int(rng, 0, 2**31), pre=0, classes=10, base_lr=0.005, frozen=frozen,
                   x=rng.random((4, 1, 28, 28)).astype(np.float32), steps=150,
                   x_train=data["x_train"], y_train=data["y_train"],
                   train_seed=_int(rng, 0, 2**31))
    return [structural, trained]


def _check_approach(which: str, case: dict, got: dict) -> None:
    assert got.get("result") == "tuple", (
        f"{which} should return (model, optimizer), got {got.get('result')}")
    classes, base_lr = case["classes"], case["base_lr"]
    with _seeded(case["seed"]):
        pre = small_cnn(case["pre"]) if case["pre"] else load_source_cnn()
    for path in case["frozen"]:
        _freeze_path(pre, path)
    # the network given: unchanged, its requires_grad untouched
    changed = [n for n, p in pre.named_parameters()
               if not np.array_equal(np.asarray(got["pretrained"][n]), _array(p))]
    assert not got["same"] and not changed, (
        f"{which} changed the network it was given ({_names(changed, 2)}): work on "
        "copy.deepcopy(pretrained)")
    if got["pretrained_grad"] != [p.requires_grad for p in pre.parameters()]:
        verb = "froze" if which == "approach1" else "unfroze"
        raise AssertionError(f"{which} {verb} the network it was given: "
                             f"{verb[:-1]} the copy, not the original")
    # the new head
    head = got["head"]
    shapes = {n: np.shape(v) for n, v in (head or {}).items()}
    assert got["head_type"] == "Linear" and shapes == {"weight": (classes, 64),
                                                       "bias": (classes,)}, (
        f"model.classifier.head should be a new nn.Linear(64, {classes}), got "
        f"{got['head_type']} {shapes}")
    if classes == pre.classifier.head.out_features:
        assert not np.array_equal(head["weight"], _array(pre.classifier.head.weight)), (
            "the head must be a new, randomly initialised layer, not the pretrained one")
    # the reference model: the same network with the student's new head
    model = copy.deepcopy(pre)
    (ref.freeze if which == "approach1" else ref.unfreeze)(model)
    new = nn.Linear(64, classes)
    with torch.no_grad():
        new.weight.copy_(torch.as_tensor(head["weight"]))
        new.bias.copy_(torch.as_tensor(head["bias"]))
    ref.replace_head(model, "classifier.head", new)
    names = [n for n, _ in model.named_parameters()]
    assert got["names"] == names, (f"the model's parameters are {_names(got['names'])}, "
                                   f"expected {_names(names)}")
    trainable = [n for n, g in zip(names, got["grad"], strict=True) if g]
    want_trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if which == "approach1":
        assert trainable == want_trainable, (
            f"only the new head should be trainable, but these are: {_names(trainable)}. "
            "Freeze everything first, then replace the head")
    else:
        frozen = [n for n in names if n not in trainable]
        assert not frozen, (f"every parameter should be trainable (unfreeze the copy); frozen: "
                            f"{_names(frozen)}")
    # the optimizer
    assert got["optimizer"] == "SGD", f"use torch.optim.SGD, got {got['optimizer']}"
    in_opt: dict[str, float] = {}
    for g in got["groups"]:
        for n in g["params"]:
            assert n not in in_opt, f"{n} is in the optimizer twice"
            in_opt[n] = float(g["lr"])
    ids = {id(p): n for n, p in model.named_parameters()}
    want = {ids[id(p)]: g["lr"] for g in ref.finetune_param_groups(model, [new], base_lr)
            for p in g["params"]}
    if which == "approach1":
        assert set(in_opt) == set(want), (
            f"the optimizer should hold exactly the new head's weight and bias, it holds "
            f"{_names(sorted(in_opt))}")
        w, b = in_opt["classifier.head.weight"], in_opt["classifier.head.bias"]
        ew, eb = want["classifier.head.weight"], want["classifier.head.bias"]
        assert np.isclose(w, ew) and np.isclose(b, eb), (
            f"the head's learning rates are {w:g} (weight) and {b:g} (bias), expected 10x and "
            f"20x base_lr = {ew:g} and {eb:g}: build the optimizer from finetune_param_groups")
    else:
        missing = sorted(set(want) - set(in_opt))
        assert not missing, (f"these parameters are not in the optimizer, so they never train: "
                             f"{_names(missing)}")
        extra = sorted(set(in_opt) - set(want))
        assert not extra, f"the optimizer holds parameters of no layer: {_names(extra)}"
        if len({round(lr, 12) for lr in in_opt.values()}) == 1:
            raise AssertionError(
                f"the optimizer has one learning rate ({next(iter(in_opt.values())):g}) for "
                "every parameter: the groups never reached it. Pass finetune_param_groups(...) "
                "to torch.optim.SGD instead of model.parameters()")
        for n, lr in want.items():
            assert np.isclose(in_opt[n], lr), (
                f"in the optimizer {n} has lr {in_opt[n]:g}, expected {lr:g} (base_lr "
                f"{base_lr:g})")
    momenta = sorted({float(g["momentum"]) for g in got["groups"]})
    assert momenta == [0.9], f"use momentum=0.9, got {momenta}"
    # the model computes the pretrained network with the new head
    with torch.no_grad():
        expected = model(torch.as_tensor(case["x"])).numpy()
    check_array(got["out"], expected, f"the model's output on the grader's {len(expected)} "
                "images (the pretrained layers with the new head)", rtol=1e-4, atol=1e-5)
    if not case["steps"]:
        return
    # trained with its own optimizer: which parameters moved, and how well it does
    trained = got["trained"]
    start = dict(pre.named_parameters())
    moved = []
    for n in names:
        before = head[n.rpartition(".")[2]] if n.startswith("classifier.head.") else _array(
            start[n])
        if not np.array_equal(np.asarray(trained[n]), before):
            moved.append(n)
    if which == "approach1":
        assert moved == want_trainable, (f"training changed {_names(moved)}; only the head should "
                                         "change")
    else:
        still = [n for n in names if n not in moved]
        assert not still, f"training left these parameters unchanged: {_names(still)}"
    net = small_cnn(classes)
    net.load_state_dict({n: torch.as_tensor(np.asarray(trained[n], dtype=np.float32))
                         for n in names})
    x_test, y_test = _target_test()
    with torch.no_grad():
        acc = float((net.eval()(torch.as_tensor(x_test)).argmax(1).numpy() == y_test).mean())
    threshold = _APPROACHES[which][1]
    assert acc > threshold, (
        f"{which} reached only {100 * acc:.1f} % on the target test set after "
        f"{case['steps']} steps on the grader's {len(case['y_train'])} images "
        f"(expected > {100 * threshold:.0f} %)")


for _which in _APPROACHES:  # test_approach1, test_approach2: one shape, two settings
    hidden.cases(f"test_{_which}")(partial(_approach_cases, which=_which))
    hidden.check(f"test_{_which}")(partial(_check_approach, _which))


# ----------------------------------------------------------------------------- adapt_in_channels


@hidden.cases("test_adapt_in_channels")
def _(rng):
    configs = [(1, 3, True, 1, 0, 1), (2, 5, False, 1, 2, 1), (4, 2, True, 2, 0, 1),
               (3, 3, True, 1, 0, 1), (3, 1, False, 1, 0, 1),
               (_int(rng, 2, 5), _int(rng, 1, 7), bool(rng.random() < 0.5), _int(rng, 1, 3),
                _int(rng, 0, 3), 2)]
    cases = []
    for c, new_c, bias, stride, padding, dilation in configs:
        filters = _int(rng, 2, 6)
        cases.append(dict(
            w=rng.normal(size=(filters, c, 3, 2)).astype(np.float32),
            b=rng.normal(size=filters).astype(np.float32) if bias else None,
            stride=stride, padding=padding, dilation=dilation, in_channels=new_c,
            x=rng.random((2, new_c, 9, 8)).astype(np.float32)))
    return cases


@hidden.check("test_adapt_in_channels")
def _(case, got):
    w, b, n = case["w"], case["b"], case["in_channels"]
    filters, c = w.shape[:2]
    conv = nn.Conv2d(c, filters, w.shape[2:], stride=case["stride"], padding=case["padding"],
                     dilation=case["dilation"], bias=b is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(w))
        if b is not None:
            conv.bias.copy_(torch.as_tensor(b))
    exp = ref.adapt_in_channels(conv, n)
    where = f"{c} -> {n} channels"
    assert got["type"] == "Conv2d", f"return an nn.Conv2d, got {got['type']}"
    assert not got["same"], "return a new Conv2d, not the conv you were given"
    check_array(got["conv_weight"], w, f"the original conv's weight after adapting {where} "
                "(leave it unchanged)")
    if n >= c:
        mean = w.mean(axis=1, keepdims=True).repeat(n - c, axis=1)
        mistakes = {"the pretrained slices were kept but not rescaled: multiply all slices by "
                    "C / in_channels": np.concatenate([w, mean], axis=1),
                    "new channels should hold the mean of the pretrained slices (rescaled)":
                    np.concatenate([w, 0 * mean], axis=1) * c / n}
    else:
        mistakes = {"the dropped slices were not shared out: add 1 / in_channels of their sum "
                    "to each kept slice": w[:, :n]}
    check_array(got["weight"], _array(exp.weight), f"the weight for {where} ({filters} filters)",
                rtol=1e-5, atol=1e-6, mistakes=mistakes)
    if b is None:
        assert got["bias"] is None, f"conv had no bias, so the new one should have none ({where})"
    else:
        assert got["bias"] is not None, f"the new conv has no bias: copy conv's bias ({where})"
        check_array(got["bias"], b, f"the bias for {where} (copy it unchanged)")
    settings = [list(exp.kernel_size), list(exp.stride), list(exp.padding), list(exp.dilation),
                exp.groups]
    assert got["settings"] == settings, (
        f"copy the settings (kernel_size, stride, padding, dilation, groups): got "
        f"{got['settings']}, expected {settings} ({where})")
    assert got["trainable"], "the new convolution should be trainable"
    with torch.no_grad():
        expected = exp(torch.as_tensor(case["x"])).numpy()
    check_array(got["out"], expected, f"the new conv's output on the grader's input ({where})",
                rtol=1e-4, atol=1e-5)
