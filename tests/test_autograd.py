"Parity of dlbook.autograd (scalar Value and Tensor engines) with torch.autograd, plus edge cases."
import math, random
import numpy as np
import pytest
import torch
from dlbook.core import check_close
from dlbook.autograd import Value, Tensor, topo_order, unbroadcast, cross_entropy, draw_graph

F64 = torch.float64
N_SCALAR_GRAPHS = 300
N_TENSOR_CASES = 120


# ---------------------------------------------------------------- scalar engine: random DAGs
def random_graph(seed: int, n_leaves: int = 4, n_ops: int = 25):
    """Build the same random expression DAG twice: with Value and with float64 torch scalars.
    Operands are drawn from ALL earlier nodes, so nodes are reused (fan-out) and gradients must accumulate.
    Domain guards keep every op finite (log of positives, division by |x| > .2, bounded exp)."""
    rng = random.Random(seed)
    leaves = [rng.uniform(-2, 2) for _ in range(n_leaves)]
    ours = [Value(v) for v in leaves]
    theirs = [torch.tensor(v, dtype=F64, requires_grad=True) for v in leaves]
    def pick(): i = rng.randrange(len(ours)); return ours[i], theirs[i]
    for _ in range(n_ops):
        (a, ta), (b, tb) = pick(), pick()
        c = rng.uniform(-2, 2)
        op = rng.choice(['add', 'mul', 'sub', 'div', 'radd', 'rsub', 'rmul', 'rdiv', 'neg', 'pow2', 'pow3', 'sqrt',
                         'powneg', 'exp', 'log', 'tanh', 'relu', 'rpow'])
        if op in ('div', 'rdiv', 'powneg') and abs((b if op == 'div' else a).data) < .2: op = 'add'
        if op in ('sqrt', 'log') and a.data <= 0.05: op = 'tanh'
        if op in ('exp', 'rpow', 'pow3', 'mul', 'pow2') and (abs(a.data) > 3 or abs(b.data) > 3): op = 'tanh'
        y, ty = {
            'add': lambda: (a + b, ta + tb), 'mul': lambda: (a * b, ta * tb), 'sub': lambda: (a - b, ta - tb),
            'div': lambda: (a / b, ta / tb), 'radd': lambda: (c + a, c + ta), 'rsub': lambda: (c - a, c - ta),
            'rmul': lambda: (c * a, c * ta), 'rdiv': lambda: (c / a, c / ta), 'neg': lambda: (-a, -ta),
            'pow2': lambda: (a ** 2, ta ** 2), 'pow3': lambda: (a ** 3, ta ** 3), 'sqrt': lambda: (a ** .5, ta ** .5),
            'powneg': lambda: (a ** -1.5 if a.data > 0 else a ** -2, ta ** -1.5 if a.data > 0 else ta ** -2),
            'exp': lambda: (a.exp(), ta.exp()), 'log': lambda: (a.log(), ta.log()), 'tanh': lambda: (a.tanh(), ta.tanh()),
            'relu': lambda: (a.relu(), ta.relu()), 'rpow': lambda: (1.7 ** a, 1.7 ** ta)}[op]()
        ty.retain_grad()
        ours.append(y); theirs.append(ty)
    # the output mixes the last few nodes, so several of them reach it along different paths
    k = rng.randint(1, 4)
    out, tout = ours[-1], theirs[-1]
    for v, tv in zip(ours[-k - 1:-1], theirs[-k - 1:-1]): out, tout = out + v * .5, tout + tv * .5
    tout.retain_grad()
    return ours + [out], theirs + [tout]


def _tgrad(t): return 0.0 if t.grad is None else t.grad.item()


@pytest.mark.parametrize('seed', range(N_SCALAR_GRAPHS))
def test_random_scalar_graph_matches_torch(seed):
    ours, theirs = random_graph(seed)
    out, tout = ours[-1], theirs[-1]
    for i, (v, t) in enumerate(zip(ours, theirs)):
        check_close(v.data, t.item(), atol=1e-9, rtol=1e-9, name=f'seed {seed}: value of node {i}')
    out.backward(); tout.backward()
    for i, (v, t) in enumerate(zip(ours, theirs)):
        check_close(v.grad, _tgrad(t), atol=1e-8, rtol=1e-8, name=f'seed {seed}: grad of node {i}')


def test_random_graphs_reuse_nodes():
    "The generator really produces fan-out: across the graphs, many nodes feed more than one later node."
    reused = 0
    for seed in range(20):
        ours, _ = random_graph(seed)
        uses = {}
        for n in ours:
            for p in n.parents: uses[id(p)] = uses.get(id(p), 0) + 1
        reused += sum(u > 1 for u in uses.values())
    assert reused > 40


@pytest.mark.parametrize('seed', range(10))
def test_scalar_finite_differences(seed):
    "Backward agrees with central differences on random graphs (leaf gradients)."
    ours, _ = random_graph(seed, n_ops=12)
    ours[-1].backward()
    h = 1e-6
    for li, leaf in enumerate(ours[:4]):
        vals = [_reevaluate(ours[-1], {leaf: leaf.data + sign * h}) for sign in (1, -1)]
        check_close(leaf.grad, (vals[0] - vals[1]) / (2 * h), atol=1e-5, rtol=1e-4, name=f'seed {seed} leaf {li}')


def _reevaluate(root, overrides):
    "Recompute a Value graph's output with some leaves replaced, using each node's op."
    val = {}
    for n in topo_order(root):
        if not n.parents: val[n] = overrides.get(n, n.data); continue
        xs = [val[p] for p in n.parents]
        op = n.op
        if op == '+': r = xs[0] + xs[1]
        elif op == '*': r = xs[0] * xs[1]
        elif op.startswith('**'): r = xs[0] ** float(op[2:])
        elif op == 'exp': r = math.exp(xs[0])
        elif op == 'log': r = math.log(xs[0])
        elif op == 'tanh': r = math.tanh(xs[0])
        elif op == 'relu': r = max(xs[0], 0.0)
        else: raise AssertionError(op)
        val[n] = r
    return val[root]


def test_double_backward_accumulates_like_torch_retain_graph():
    for seed in range(20):
        ours, theirs = random_graph(seed)
        out, tout = ours[-1], theirs[-1]
        out.backward(); tout.backward(retain_graph=True)
        once = [v.grad for v in ours]
        out.backward(); tout.backward()
        for i, (v, t) in enumerate(zip(ours, theirs)):
            check_close(v.grad, _tgrad(t), atol=1e-8, rtol=1e-8, name=f'seed {seed}: grad of node {i} after two backwards')
            check_close(v.grad, 2 * once[i], atol=1e-12, rtol=1e-12, name='doubled')


def test_node_used_twice():
    x = Value(3.0)
    y = x * x * x + x + x          # 3x^2 + 2
    y.backward()
    assert x.grad == 3 * 9 + 2
    z = Value(-1.5); w = z + z; w.backward()
    assert z.grad == 2


def test_deep_chain_100k():
    x = Value(0.3)
    y = x
    for i in range(100_000): y = (y + 0.00001) * 0.99999 if i % 2 else y * 1.00001
    y.backward()
    expected = 1.00001 ** 50_000 * 0.99999 ** 50_000
    check_close(x.grad, expected, atol=1e-12, rtol=1e-9)
    assert len(topo_order(y)) > 200_000


def test_scalar_edge_cases_match_torch():
    # log(0) = -inf with grad inf, log(-1) = nan, relu at 0 has grad 0: all as torch does
    for v in [0.0, -1.0, 2.0]:
        a = Value(v); y = a.log(); y.backward()
        t = torch.tensor(v, dtype=F64, requires_grad=True); ty = t.log(); ty.backward()
        check_close(y.data, ty.item(), name=f'log({v})'); check_close(a.grad, t.grad.item(), name=f'grad of log at {v}')
    a = Value(0.0); a.relu().backward(); assert a.grad == 0.0
    assert math.isnan((Value(-8.0) ** 0.5).data)
    assert (Value(0.0) ** -1).data == math.inf and (Value(1000.0).exp()).data == math.inf
    assert (Value(2.0) ** 0).data == 1.0


def test_scalar_type_errors():
    with pytest.raises(TypeError, match='int or float'): Value('3')
    with pytest.raises(TypeError, match='int or float'): Value(np.zeros(3))
    with pytest.raises(TypeError, match=r'\.item\(\)'): Value(1.0) + torch.tensor(1.0)
    with pytest.raises(TypeError, match='got str'): Value(1.0) * 'x'
    with pytest.raises(TypeError, match='got str'): 'x' - Value(1.0)
    with pytest.raises(TypeError, match='exponent'): Value(2.0) ** Value(3.0)
    with pytest.raises(TypeError, match='got list'): Value(1.0) / [1]


def test_draw_graph_runs():
    import matplotlib; matplotlib.use('Agg')
    a, b = Value(1.0), Value(2.0)
    y = (a * b + a).tanh(); y.backward()
    ax = draw_graph(y)
    boxes = [t for t in ax.texts if t.get_bbox_patch() is not None]
    assert len(boxes) == len(topo_order(y)) == 5
    assert any('grad 1' in t.get_text() and 'tanh' in t.get_text() for t in boxes)


# ---------------------------------------------------------------- tensor engine
def rand_shape(rng, ndim, lo=1, hi=4): return tuple(rng.randint(lo, hi) for _ in range(ndim))


def broadcast_pair(rng):
    "Two shapes that broadcast: drop leading dims and set random dims to 1 in each."
    full = rand_shape(rng, rng.randint(0, 4), 2, 4)
    def shrink():
        s = list(full[rng.randint(0, len(full)):]) if full else []
        return tuple(1 if rng.random() < .3 else n for n in s)
    return shrink(), shrink()


def leaf(shape, gen, positive=False):
    x = torch.randn(shape, dtype=F64, generator=gen)
    if positive: x = x.abs() + .5
    return Tensor(x, requires_grad=True), x.clone().requires_grad_()


def finish(y, ty, gen):
    "Reduce both outputs with the same random weights so every output entry gets a different upstream gradient."
    w = torch.randn(ty.shape, dtype=F64, generator=gen)
    (y * w).sum().backward(); (ty * w).sum().backward()
    check_close(y.data, ty.detach(), atol=1e-10, rtol=1e-8, name='value')


def cmp_grads(pairs, what):
    for i, (o, t) in enumerate(pairs):
        check_close(o.grad, t.grad, atol=1e-10, rtol=1e-8, name=f'{what}: grad of input {i}')


@pytest.mark.parametrize('seed', range(N_TENSOR_CASES))
def test_broadcasting_binary_ops(seed):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    sa, sb = broadcast_pair(rng)
    op = ['+', '-', '*', '/'][seed % 4]
    a, ta = leaf(sa, gen); b, tb = leaf(sb, gen, positive=op == '/')
    f = {'+': lambda x, y: x + y, '-': lambda x, y: x - y, '*': lambda x, y: x * y, '/': lambda x, y: x / y}[op]
    # a little expression that reuses both inputs
    y, ty = f(f(a, b), a) * b, f(f(ta, tb), ta) * tb
    finish(y, ty, gen)
    cmp_grads([(a, ta), (b, tb)], f'{op} with shapes {sa} and {sb}')


@pytest.mark.parametrize('seed', range(40))
def test_matmul_batched_and_broadcast(seed):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    n, k, m = rand_shape(rng, 3, 1, 6)
    batch = rand_shape(rng, rng.randint(0, 2), 1, 3)
    bb = tuple(1 if rng.random() < .4 else d for d in batch)[rng.randint(0, len(batch)):]
    a, ta = leaf(batch + (n, k), gen); b, tb = leaf(bb + (k, m), gen)
    if seed % 2: (a, ta), (b, tb) = (leaf(bb + (n, k), gen)), (leaf(batch + (k, m), gen))
    finish(a @ b, ta @ tb, gen)
    cmp_grads([(a, ta), (b, tb)], f'matmul {tuple(a.shape)} @ {tuple(b.shape)}')


@pytest.mark.parametrize('seed', range(40))
def test_reductions(seed):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    shape = rand_shape(rng, rng.randint(1, 4), 1, 5)
    a, ta = leaf(shape, gen)
    choice = rng.random()
    dim = None if choice < .2 else (rng.randrange(-len(shape), len(shape)) if choice < .6
                                    else tuple(rng.sample(range(len(shape)), rng.randint(1, len(shape)))))
    keep = rng.random() < .5
    kw = {} if dim is None else dict(dim=dim, keepdim=keep)
    meth = 'sum' if seed % 2 else 'mean'
    y, ty = getattr(a * a, meth)(**kw), getattr(ta * ta, meth)(**kw)
    finish(y, ty, gen)
    cmp_grads([(a, ta)], f'{meth} of {shape} over {dim} keepdim={keep}')


@pytest.mark.parametrize('seed', range(30))
def test_log_softmax_unary_and_indexing(seed):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    shape = rand_shape(rng, rng.randint(1, 3), 1, 6)
    dim = rng.randrange(-len(shape), len(shape))
    a, ta = leaf(shape, gen)
    scale = [1, 30, 300][seed % 3]   # large logits exercise the max shift
    y, ty = (a * scale).log_softmax(dim), torch.log_softmax(ta * scale, dim)
    finish(y, ty, gen)
    cmp_grads([(a, ta)], f'log_softmax of {shape} over dim {dim} (scale {scale})')
    b, tb = leaf(shape, gen)
    idx = torch.randint(0, shape[0], (7,), generator=gen)      # repeated indices must accumulate
    y2 = (b.tanh().exp() + b.relu() + (b * b + 1).log())[idx].reshape(-1)
    ty2 = (tb.tanh().exp() + tb.relu() + (tb * tb + 1).log())[idx].reshape(-1)
    finish(y2, ty2, gen)
    cmp_grads([(b, tb)], f'unary ops + indexing {shape}')


def test_slicing_transpose_pow_neg():
    gen = torch.Generator().manual_seed(0)
    a, ta = leaf((4, 5), gen, positive=True)
    y = (-(a[1:, ::2] ** 1.5)).T @ a[:3, 1:4]
    ty = (-(ta[1:, ::2] ** 1.5)).T @ ta[:3, 1:4]
    finish(y, ty, gen)
    cmp_grads([(a, ta)], 'slices, .T, ** and neg')
    r, tr = leaf((), gen)
    finish(2 / r - 3 + 1 * r - r / 4, 2 / tr - 3 + 1 * tr - tr / 4, gen)
    cmp_grads([(r, tr)], 'reflected ops on a 0-d tensor')


def test_mlp_cross_entropy_matches_torch():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 20, dtype=F64, generator=gen); y = torch.randint(0, 5, (32,), generator=gen)
    shapes = [(20, 16), (16,), (16, 5), (5,)]
    ps = [leaf(s, gen) for s in shapes]
    o, t = [p[0] for p in ps], [p[1] for p in ps]
    loss = cross_entropy((Tensor(x) @ o[0] + o[1]).relu() @ o[2] + o[3], y)
    tloss = torch.nn.functional.cross_entropy((x @ t[0] + t[1]).relu() @ t[2] + t[3], y)
    loss.backward(); tloss.backward()
    check_close(loss.data, tloss.detach(), atol=1e-12)
    cmp_grads(ps, 'MLP')


def test_tensor_double_backward_and_constants():
    gen = torch.Generator().manual_seed(1)
    a, ta = leaf((3, 4), gen)
    c = torch.randn(4, dtype=F64, generator=gen)
    y, ty = ((a * c + a) ** 2).mean(), ((ta * c + ta) ** 2).mean()
    y.backward(); ty.backward(retain_graph=True)
    y.backward(); ty.backward()
    cmp_grads([(a, ta)], 'after two backwards')
    x = Tensor(torch.ones(3))
    assert not (x * 2).requires_grad
    w = Tensor(torch.ones(3), requires_grad=True)
    (x * w).sum().backward()
    assert x.grad is None and w.grad is not None


def test_tensor_deep_chain():
    x = Tensor(torch.tensor([1.0, 2.0], dtype=F64), requires_grad=True)
    y = x
    for _ in range(20_000): y = y * 1.0001
    y.sum().backward()
    check_close(x.grad, torch.full((2,), 1.0001 ** 20_000, dtype=F64), atol=1e-9)


def test_unbroadcast():
    g = torch.arange(24.).reshape(2, 3, 4)
    check_close(unbroadcast(g, (1, 4)), g.sum((0, 1)).reshape(1, 4))
    check_close(unbroadcast(g, (3, 1)), g.sum((0, 2)).reshape(3, 1))
    assert unbroadcast(g, ()).shape == ()


def test_tensor_log_of_nonpositive_matches_torch():
    x = torch.tensor([0.0, -1.0, 2.0], dtype=F64)
    a, ta = Tensor(x, requires_grad=True), x.clone().requires_grad_()
    a.log().sum().backward(); ta.log().sum().backward()
    check_close(a.log().data, ta.log().detach())     # -inf, nan, log 2
    check_close(a.grad, ta.grad)                      # inf, -1, .5


def test_tensor_errors_name_the_problem():
    A, B = Tensor(torch.ones(2, 3)), Tensor(torch.ones(4, 5))
    with pytest.raises(ValueError, match=r'\(2, 3\) and \(4, 5\)'): A + B
    with pytest.raises(ValueError, match=r'\(2, 3\) and \(4, 5\)'): A * B
    with pytest.raises(ValueError, match=r'\(2, 3\) and \(4, 5\)'): A @ B
    with pytest.raises(ValueError, match=r'\(2, 3\) and \(3,\)'): A @ Tensor(torch.ones(3))
    with pytest.raises(ValueError, match='batch dims'): Tensor(torch.ones(2, 2, 3)) @ Tensor(torch.ones(3, 3, 1))
    with pytest.raises(ValueError, match=r'\(2, 3\).*into'): A.reshape(4, 2)
    with pytest.raises(ValueError, match='2-D'): Tensor(torch.ones(2, 2, 2)).T
    with pytest.raises(IndexError, match='dim 5'): A.sum(5)
    with pytest.raises(TypeError, match='got str'): A + 'a'
    with pytest.raises(TypeError, match='got str'): Tensor('abc')
    with pytest.raises(TypeError, match='already'): Tensor(A)
    with pytest.raises(TypeError, match='exponent'): A ** A
    with pytest.raises(TypeError, match='not with a Tensor'): A[Tensor(torch.zeros(1))]
    w = Tensor(torch.ones(2, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r'shape \(2, 3\)'): (w * 2).backward()
    with pytest.raises(ValueError, match=r'\(3,\).*\(2, 3\)'): (w * 2).backward(torch.ones(3))
    with pytest.raises(RuntimeError, match='does not require grad'): A.sum().backward()
    logits = Tensor(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r'\(4, 3\) and \(5,\)'): cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match='integer'): cross_entropy(logits, torch.zeros(4))
    with pytest.raises(ValueError, match=r'\[0, 3\)'): cross_entropy(logits, torch.full((4,), 3))
    with pytest.raises(TypeError, match='Tensor'): cross_entropy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def test_tensor_does_not_touch_torch_autograd():
    t = torch.randn(3, requires_grad=True)
    a = Tensor(t, requires_grad=True)
    y = (a * a).sum()
    assert not y.data.requires_grad and y.data.grad_fn is None
    y.backward()
    assert t.grad is None
    check_close(a.grad, 2 * t.detach())
