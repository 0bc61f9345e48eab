"""Tests of dlbook.optim: >= 100-step parity with torch.optim for every optimizer and several hyper-parameter
settings (all parameter values compared after every step), state_dict round-trips, parameter groups, bad inputs.

Tolerances: in float64 the two implementations differ only by rounding order, so after every one of 100+ steps
we require |ours - torch| <= 1e-10 + 1e-8 * |torch|. In float32 we require <= 1e-5 + 1e-4 * |torch| (check_close's
defaults); rounding differences there are ~1e-7 per step and stay far below that on these smooth problems.
"""
import io
import pytest
import torch
import torch.nn.functional as F
from dlbook.optim import Optimizer, SGD, RMSProp, Adam, AdamW
from dlbook.core import check_close, set_seed

CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.02, momentum=0.5, dampening=0.3)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=1e-2)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.95, weight_decay=5e-4, nesterov=True)),
    (RMSProp, torch.optim.RMSprop, dict(lr=1e-2)),
    (RMSProp, torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9, eps=1e-6)),
    (RMSProp, torch.optim.RMSprop, dict(lr=1e-3, momentum=0.9)),
    (RMSProp, torch.optim.RMSprop, dict(lr=3e-3, weight_decay=1e-2, momentum=0.5)),
    (Adam, torch.optim.Adam, dict(lr=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99))),
    (Adam, torch.optim.Adam, dict(lr=3e-3, eps=1e-6, weight_decay=1e-2)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.0, 0.9))),
    (AdamW, torch.optim.AdamW, dict(lr=1e-3)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-7, weight_decay=0.05)),
]


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py: tiny tensors, one torch thread


TOL = {torch.float64: dict(atol=1e-10, rtol=1e-8), torch.float32: dict(atol=1e-5, rtol=1e-4)}


def make_models(dtype, seed=0):
    set_seed(seed)
    mk = lambda: torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4)).to(dtype)
    m1, m2 = mk(), mk()
    m2.load_state_dict(m1.state_dict())
    return m1, m2


def train_both(m1, o1, m2, o2, steps, dtype, seed=0, tol=None, groups_lr=None):
    g = torch.Generator().manual_seed(seed + 1)
    for t in range(steps):
        x = torch.randn(24, 5, generator=g, dtype=dtype)
        y = torch.randint(0, 4, (24,), generator=g)
        if groups_lr is not None:            # change the lr of every group between steps, as a scheduler would
            for o in (o1, o2):
                for i, grp in enumerate(o.param_groups): grp['lr'] = groups_lr(t, i)
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
        if tol is not None:
            for (n, a), b in zip(m1.named_parameters(), m2.parameters()):
                check_close(a, b, name=f"step {t + 1} {n}", **tol)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('ours,theirs,kw', CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_parity_every_step(ours, theirs, kw, dtype):
    m1, m2 = make_models(dtype)
    o1, o2 = ours(m1.parameters(), **kw), theirs(m2.parameters(), **kw)
    train_both(m1, o1, m2, o2, steps=120, dtype=dtype, tol=TOL[dtype])
    # the states agree too, in torch's names
    sd1, sd2 = o1.state_dict()['state'], o2.state_dict()['state']
    assert sd1.keys() == sd2.keys()
    for i in sd1:
        for k, v in sd1[i].items():
            if isinstance(v, torch.Tensor): check_close(v, sd2[i][k], name=f"state {i} {k}", **TOL[dtype])
            else: assert v == int(sd2[i][k])


def test_parity_is_not_vacuous():
    "The harness must notice a wrong rule: a slightly different lr fails the float64 check."
    m1, m2 = make_models(torch.float64)
    o1, o2 = Adam(m1.parameters(), lr=1.001e-3), torch.optim.Adam(m2.parameters(), lr=1e-3)
    with pytest.raises(AssertionError, match='differ'):
        train_both(m1, o1, m2, o2, steps=5, dtype=torch.float64, tol=TOL[torch.float64])


@pytest.mark.parametrize('ours,theirs,kw', [CASES[5], CASES[9], CASES[12], CASES[16]])
def test_parity_with_groups_and_changing_lr(ours, theirs, kw):
    m1, m2 = make_models(torch.float64)
    def groups(m): return [{'params': [m[0].weight, m[2].weight]}, {'params': [m[0].bias, m[2].bias], 'weight_decay': 0.0, 'lr': kw['lr'] / 2}]
    o1, o2 = ours(groups(m1), **kw), theirs(groups(m2), **kw)
    sched = lambda t, i: kw['lr'] * (1 + t % 7) / 7 / (i + 1)
    train_both(m1, o1, m2, o2, steps=100, dtype=torch.float64, tol=TOL[torch.float64], groups_lr=sched)


@pytest.mark.parametrize('ours,theirs,kw', [CASES[1], CASES[3], CASES[8], CASES[11], CASES[15]])
def test_state_dict_round_trip(ours, theirs, kw, tmp_path):
    m1, m2 = make_models(torch.float32)
    o1, o2 = ours(m1.parameters(), **kw), ours(m2.parameters(), **kw)
    train_both(m1, o1, m2, o2, steps=30, dtype=torch.float32)
    torch.save({'model': m1.state_dict(), 'opt': o1.state_dict()}, tmp_path / 'ck.pt')
    train_both(m1, o1, m2, o2, steps=30, dtype=torch.float32, seed=5)    # m1 carries on
    ck = torch.load(tmp_path / 'ck.pt', weights_only=True)
    m3, _ = make_models(torch.float32, seed=9)
    m3.load_state_dict(ck['model'])
    o3 = ours(m3.parameters(), **{**kw, 'lr': 99.0})
    o3.load_state_dict(ck['opt'])
    assert o3.param_groups[0]['lr'] == kw['lr']
    train_both(m3, o3, m2, o2, steps=30, dtype=torch.float32, seed=5)    # m3 resumes from the checkpoint
    for a, b in zip(m1.parameters(), m3.parameters()): assert torch.equal(a, b)
    # a torch.optim state loads into ours and carries on in step with it
    m4, m5 = make_models(torch.float64)
    t4, t5 = theirs(m4.parameters(), **kw), theirs(m5.parameters(), **kw)
    train_both(m4, t4, m5, t5, steps=20, dtype=torch.float64)
    buf = io.BytesIO(); torch.save(t5.state_dict(), buf); buf.seek(0)
    o5 = ours(m5.parameters(), **kw); o5.load_state_dict(torch.load(buf, weights_only=True))
    train_both(m4, t4, m5, o5, steps=100, dtype=torch.float64, seed=3, tol=TOL[torch.float64])


def test_zero_grad_and_skipped_params():
    lin = torch.nn.Linear(3, 2)
    opt = SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.ones(1, 3)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert torch.equal(lin.weight.grad, torch.zeros_like(lin.weight))
    opt.zero_grad()
    assert lin.weight.grad is None
    w0 = lin.weight.detach().clone()
    lin.bias.grad = torch.ones(2)
    opt.step()                                             # the weight has no grad: untouched, no state
    assert torch.equal(lin.weight, w0) and lin.weight not in opt.state and lin.bias in opt.state
    loss = opt.step(lambda: lin(torch.ones(1, 3)).sum())   # closure form
    assert loss is not None


@pytest.mark.parametrize('make,exc,msg', [
    (lambda p: SGD(p, lr=-1), ValueError, 'lr must be in'),
    (lambda p: SGD(p, lr='1'), TypeError, 'lr must be a number'),
    (lambda p: SGD(p, lr=0.1, momentum=1.0), ValueError, 'momentum must be in [0, 1)'),
    (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, 'momentum > 0'),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, 'dampening = 0'),
    (lambda p: SGD(p, weight_decay=-0.1), ValueError, 'weight_decay must be in'),
    (lambda p: RMSProp(p, alpha=1.5), ValueError, 'alpha must be in'),
    (lambda p: RMSProp(p, eps=-1e-8), ValueError, 'eps must be in'),
    (lambda p: Adam(p, betas=(0.9,)), ValueError, 'betas must be a pair'),
    (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, 'betas[0] must be in [0, 1)'),
    (lambda p: AdamW(p, weight_decay=None), TypeError, 'weight_decay must be a number'),
    (lambda p: SGD(next(iter(p))), TypeError, 'single tensor'),
    (lambda p: SGD([]), ValueError, 'empty parameter list'),
    (lambda p: SGD([1.0, 2.0]), TypeError, 'can only update tensors'),
    (lambda p: SGD([x * 2 for x in p]), ValueError, 'non-leaf'),
    (lambda p: SGD(list(p) * 2), ValueError, 'more than once'),
    (lambda p: SGD([{'params': list(p), 'momentun': 0.9}]), ValueError, "unknown hyper-parameter(s) ['momentun']"),
    (lambda p: SGD([{'params': []}]), ValueError, 'no parameters'),
    (lambda p: SGD(p).load_state_dict({'state': {}}), ValueError, "'param_groups'"),
])
def test_bad_inputs(make, exc, msg):
    lin = torch.nn.Linear(2, 2)
    with pytest.raises(exc) as e: make(lin.parameters())
    assert msg in str(e.value)


def test_load_state_dict_checks_shapes_of_groups():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    sd = SGD(a.parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match='groups of sizes'):
        SGD([b.weight], lr=0.1).load_state_dict(sd)


def test_base_class_needs_update():
    w = torch.nn.Parameter(torch.ones(2)); w.grad = torch.ones(2)
    with pytest.raises(NotImplementedError, match='update'):
        Optimizer([w], dict(lr=0.1)).step()


def test_drives_the_learner():
    "Our optimizers plug into dlbook.learner's Learner and its one-cycle schedule (which sets lr and momentum/betas per group)."
    learner = pytest.importorskip('dlbook.learner')
    from dlbook.loaders import mnist1d_dls
    import functools
    dls = mnist1d_dls(bs=256, device='cpu')
    for opt_func in (AdamW, functools.partial(SGD, momentum=0.9, nesterov=True)):
        set_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        learn = learner.Learner(model, dls, opt_func=opt_func, lr=1e-2, cbs=[learner.OneCycleCB(1e-2)])
        w0 = model[0].weight.detach().clone()
        learn.fit(1)
        assert isinstance(learn.opt, (AdamW, SGD))
        assert not torch.equal(w0, model[0].weight)
        assert learn.opt.param_groups[0]['lr'] < 1e-3        # the schedule ended low
        sd = learn.opt.state_dict()
        buf = io.BytesIO(); torch.save(sd, buf); buf.seek(0)
        opt2 = opt_func(model.parameters(), lr=1.0); opt2.load_state_dict(torch.load(buf, weights_only=True))
        assert opt2.param_groups[0]['lr'] == learn.opt.param_groups[0]['lr']
