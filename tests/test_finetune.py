"""The one training loop (bench.training; `finetune` is its defense form): BatchNorm running
statistics stay exactly as they were with freeze_bn (the default of every training defense)
and move without it; messages name the component whatever its kind; the record; the seed
alone decides the result; how a last batch of one image is handled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import FitContext, IQASplit
from bench.training import finetune, train_loop


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 1))
    # "pretrained" statistics, not those of the fine-tuning images (nor BatchNorm's 0 and 1)
    for bn in (m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.running_mean.fill_(0.05)
        bn.running_var.fill_(1.5)
        bn.num_batches_tracked.fill_(1000)
    return net.eval()


def _ctx() -> FitContext:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(10, 3, 12, 12, generator=g)
    split = IQASplit(images, torch.rand(10, generator=g), [f"i{k}" for k in range(10)], [f"r{k}" for k in range(10)])
    return FitContext(train=split, targets=torch.rand(10, generator=g), seed=0, device=torch.device("cpu"),
                      log=lambda m: None)


def _bn_buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()
            if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}


def _weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _tune(net: nn.Module, freeze_bn: bool) -> list[float]:
    return finetune(net, _ctx(), lambda x, y: ((net(x).reshape(-1) - y) ** 2).mean(), name="t", epochs=2, lr=1e-2,
                    batch_size=4, freeze_bn=freeze_bn)


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_batchnorm_statistics_are_frozen_exactly_when_asked(freeze_bn: bool) -> None:
    net = _net()
    stats, weights = _bn_buffers(net), _weights(net)
    assert len(stats) == 9  # three BatchNorm layers, three buffers each
    losses = _tune(net, freeze_bn)
    assert len(losses) == 2
    after = _bn_buffers(net)
    # the fine-tune trained every parameter, BatchNorm's affine ones included, either way
    assert all(not torch.equal(weights[k], v) for k, v in net.named_parameters()), "some parameter did not train"
    if freeze_bn:
        for k, v in stats.items():
            assert torch.equal(after[k], v), k  # bit-identical, not merely close
    else:
        for k, v in stats.items():
            assert not torch.equal(after[k], v), k
        # 10 images in batches of 4, 4, 2: three batches per epoch, two epochs
        assert all(int(v) == 1006 for k, v in after.items() if k.endswith("num_batches_tracked"))
    assert not net.training and not any(m.training for m in net.modules())  # left in eval mode


def _tiny() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1))


def _l2(net: nn.Module):
    return lambda x, y: ((net(x).reshape(-1) - y) ** 2).mean()


@pytest.mark.parametrize(("kind", "words"), [("model", "model 'tiny': training diverged"),
                                             ("defense", "defense 'tiny': fine-tuning diverged")])
def test_a_non_finite_loss_stops_with_one_line_naming_the_component(kind: str, words: str) -> None:
    net = _tiny()
    net[0].weight.requires_grad_(False)
    with pytest.raises(RuntimeError, match=words) as e:
        train_loop(net, _ctx(), lambda x, y: net(x).sum() * float("nan"), kind=kind, name="tiny", epochs=2, lr=1e-2,
                   batch_size=4)
    assert "\n" not in str(e.value) and "epoch 1/2, batch 1/3" in str(e.value)
    assert not net.training and not net[0].weight.requires_grad  # flags and mode restored


def test_the_record_and_the_returned_losses() -> None:
    net, ctx = _tiny(), _ctx()
    losses = train_loop(net, ctx, _l2(net), kind="model", name="tiny", epochs=3, lr=1e-2, batch_size=4)
    rec = ctx.record
    assert len(losses) == 3 and rec["loss_per_epoch"] == losses and rec["final_loss"] == losses[-1]
    assert (rec["epochs"], rec["lr"], rec["batch_size"]) == (3, 1e-2, 4) and rec["seconds"] >= 0


def test_the_seed_alone_decides_the_weights_and_the_callers_rng_is_left_alone() -> None:
    """Dropout draws from the global RNG: the loop seeds it with ctx.seed, whatever the
    caller did before, and hands the caller's state back."""
    runs = []
    for before in (0, 12345):
        net = _tiny()
        torch.manual_seed(before)
        state = torch.get_rng_state()
        train_loop(net, _ctx(), _l2(net), kind="model", name="tiny", epochs=2, lr=1e-2, batch_size=4,
                   optimizer="adamw", weight_decay=1e-3, schedule="cosine")
        assert torch.equal(torch.get_rng_state(), state)
        runs.append(_weights(net))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize(("mode", "sizes"), [("fold", [4, 5]), ("keep", [4, 4, 1]), ("skip", [4, 4])])
def test_a_last_batch_of_one(mode: str, sizes: list[int]) -> None:
    """9 images in batches of 4: the last image alone is folded into the batch before,
    trained alone, or skipped, but only after `augment` drew for it (the draws of the
    batches after it stay where they were)."""
    net, ctx, seen, augmented = _tiny(), _ctx(), [], []
    ctx.train.images, ctx.targets = ctx.train.images[:9], ctx.targets[:9]

    def loss(x, y):
        seen.append(len(y))
        return _l2(net)(x, y)

    def augment(x, g):
        augmented.append((len(x), x.device.type, float(torch.rand(1, generator=g))))
        return x

    train_loop(net, ctx, loss, kind="model", name="tiny", epochs=1, lr=1e-2, batch_size=4, augment=augment,
               batch_of_one=mode)
    assert seen == sizes
    assert [n for n, _, _ in augmented] == (sizes if mode == "fold" else [4, 4, 1])
    assert {d for _, d, _ in augmented} == {"cpu"}
