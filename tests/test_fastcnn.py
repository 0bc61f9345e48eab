"Tests of dlbook.fastcnn: random flips (training only, no host sync), the recipe's Learner, planning from a throughput."
import pytest
import torch
from dlbook.core import set_seed
from dlbook.loaders import TensorLoader, DataLoaders
from dlbook.perf import SyncCheckCB
from dlbook.precision import autocast_dtype
from dlbook.conv import RandomFlipCB
from dlbook.fastcnn import fast_cnn_learner, epochs_for_budget, OPTIMIZERS

pytestmark = pytest.mark.usefixtures('one_thread')


def dls(n=96):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DataLoaders(TensorLoader(x, y, bs=32, shuffle=True, seed=0), TensorLoader(x[:32], y[:32], bs=32))


@pytest.mark.parametrize('opt', sorted(OPTIMIZERS))
def test_recipe_trains_without_host_sync(opt):
    set_seed(0)
    learn = fast_cnn_learner(dls(), (4, 8, 8), opt=opt, extra_cbs=[SyncCheckCB()])
    learn.fit_one_cycle(1, max_lr=learn.lr)
    assert learn.pred.dtype == (autocast_dtype('cpu')[0] or torch.float32)
    assert learn.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(learn.recorder.loss_values).all()


def test_flips_change_training_batches_only():
    from dlbook.learner import Callback
    seen = []
    class Grab(Callback):
        def __init__(self, order): self.order, self.when = order, 'before' if order < -17 else 'after'
        def before_batch(self): seen.append((self.when, self.learn.training, self.learn.batch[0].clone()))
    set_seed(0)
    learn = fast_cnn_learner(dls(64), (4, 8, 8), extra_cbs=[Grab(-18), Grab(-16)])    # around RandomFlipCB (-17)
    learn.fit(1)
    pairs = [(b, a, tr) for (w1, tr, b), (w2, _, a) in zip(seen[::2], seen[1::2])]
    assert all(torch.equal(b, a) for b, a, tr in pairs if not tr)                       # validation untouched
    changed = sum(int((b != a).flatten(1).any(1).sum()) for b, a, tr in pairs if tr)
    assert 0 < changed < 64                                                              # some, not all, of 64 images
    for b, a, tr in pairs:
        if tr: assert all(torch.equal(ai, bi) or torch.equal(ai, bi.flip(-1)) for ai, bi in zip(a, b))


def test_epochs_for_budget():
    assert epochs_for_budget(100, 6778, 55_000) == 12
    with pytest.raises(ValueError, match='positive images_per_s'): epochs_for_budget(1, -1, 10)
    with pytest.raises(ValueError, match='probability'): RandomFlipCB(-0.1)
