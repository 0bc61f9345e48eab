"dlbook.finetune: balanced subsets, the freezing callback (per-epoch trainable groups, batch norms, restore), discriminative groups, the cached top."
import pytest
import torch
from torch import nn
from dlbook import finetune as T
from dlbook.learner import Learner, Callback, MetricsCB
from dlbook.loaders import TensorLoader, DataLoaders

pytestmark = pytest.mark.usefixtures('one_thread')


def test_balanced_subset():
    y = torch.arange(10).repeat(30)
    s = T.balanced_subset(y, 7, seed=3)
    assert torch.bincount(y[s]).tolist() == [7] * 10 and torch.equal(s, s.sort().values) and len(s.unique()) == 70
    assert torch.equal(s, T.balanced_subset(y, 7, seed=3)) and not torch.equal(s, T.balanced_subset(y, 7, seed=4))
    with pytest.raises(ValueError, match='cannot draw 31'): T.balanced_subset(y, 31, 0)


def _tiny():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    groups = [[m[0], m[1]], [m[3], m[4]], [m[5]]]
    dls = DataLoaders(TensorLoader(torch.randn(40, 4), torch.randint(0, 3, (40,)), bs=10, shuffle=True, seed=0),
                      TensorLoader(torch.randn(20, 4), torch.randint(0, 3, (20,)), bs=10))
    return m, groups, dls


@pytest.mark.parametrize('every, expect', [(1, [1, 2, 3, 3]), (2, [1, 1, 2, 2]), (None, [1, 1, 1, 1])])
def test_unfreeze_schedule_and_frozen_state(every, expect):
    m, groups, dls = _tiny()
    seen = []
    class Spy(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.iter == 0:
                seen.append(sum(all(p.requires_grad for mod in g for p in mod.parameters()) for g in groups))
                for i, g in enumerate(groups):   # frozen groups' batch norms are in eval mode, trainable ones in train mode
                    bns = [b for mod in g for b in mod.modules() if isinstance(b, nn.BatchNorm1d)]
                    assert all(b.training == (i >= 3 - seen[-1]) for b in bns)
    cb = T.GradualUnfreezeCB(groups, every)
    snap = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW(T.discriminative_groups(groups, 1e-2), weight_decay=0.1)
    Learner(m, dls, opt_func=lambda p, lr: opt, cbs=[cb, Spy(), MetricsCB(show=False)]).fit(4)
    assert seen == expect
    if every is None:   # only the classifier trained: everything else, running stats included, is bit for bit as before
        for k, v in m.state_dict().items():
            if not k.startswith('5.'): assert torch.equal(v, snap[k]), k
    assert all(p.requires_grad for p in m.parameters())


def test_bn_left_training_changes_running_stats():
    m, groups, dls = _tiny()
    before = m[1].running_mean.clone()
    opt = torch.optim.SGD(T.discriminative_groups(groups, 1e-2), lr=1e-2)
    Learner(m, dls, opt_func=lambda p, lr: opt, cbs=[T.GradualUnfreezeCB(groups, None, freeze_bn=False), MetricsCB(show=False)]).fit(1)
    assert not torch.equal(m[1].running_mean, before) and torch.equal(m[0].weight.detach(), m[0].weight.detach())


def test_discriminative_groups_and_errors():
    mods = [nn.Linear(2, 2), nn.Linear(2, 2), [nn.Linear(2, 2), nn.Linear(2, 1)]]
    pg = T.discriminative_groups(mods, 0.9, factor=3)
    assert [g['lr'] for g in pg] == pytest.approx([0.1, 0.3, 0.9]) and [len(g['params']) for g in pg] == [2, 2, 4]
    with pytest.raises(ValueError, match='epochs_per_stage'): T.GradualUnfreezeCB(mods, epochs_per_stage=0)
    with pytest.raises(ValueError, match='epochs_per_stage'): T.GradualUnfreezeCB(mods, epochs_per_stage=1.5)


def test_lite_input_and_top():
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    a = T.lite_input(x, 32)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a[:, 0], a[:, 2])
    with pytest.raises(ValueError, match='grayscale bytes'): T.lite_input(x.float())
    from dlbook.pretrained import EfficientNetLite0
    net = EfficientNetLite0().eval()
    top = T.Lite0Top(net, 12, 5).eval()
    with torch.no_grad():
        pre = nn.Sequential(net.stem, *net.blocks[:12])(a)
        torch.testing.assert_close(top.features(pre), net.features(a))
        torch.testing.assert_close(T.cache_prefix(net, 12, x, bs=2, size=32), pre)
    assert top(pre).shape == (3, 5)
