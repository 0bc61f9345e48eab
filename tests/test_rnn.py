"Tests for dlbook.rnn: parity of our cells/layers with PyTorch's (values and gradients), finite differences, bad inputs."
import math
import pytest
import torch
from torch import nn
from dlbook.core import check_close, set_seed


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py: tiny tensors, one torch thread
from dlbook.rnn import (RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU, copy_weights, cell_parity, layer_parity, clip_grad_norm,
                        state_grad_norms, SeqClassifier, CharVocab, char_windows, CharLM, sample_chars, seq_cross_entropy,
                        python_docs_text, noisy_sines, series_windows, Forecaster, forecast)

CELLS = [(RNNCell, nn.RNNCell, {}), (RNNCell, nn.RNNCell, {'nonlinearity': 'relu'}), (LSTMCell, nn.LSTMCell, {}), (GRUCell, nn.GRUCell, {})]
LAYERS = [(RNN, nn.RNN, {}), (RNN, nn.RNN, {'nonlinearity': 'relu'}), (LSTM, nn.LSTM, {}), (GRU, nn.GRU, {})]


@pytest.mark.parametrize('ours,theirs,kw', CELLS)
@pytest.mark.parametrize('batch,inp,hid,bias,give', [(1, 1, 1, True, False), (5, 3, 7, True, True), (8, 10, 4, False, True), (2, 6, 16, False, False)])
def test_cell_parity(ours, theirs, kw, batch, inp, hid, bias, give):
    set_seed(batch * 100 + hid)
    x = torch.randn(batch, inp)
    st = None
    if give: st = (torch.randn(batch, hid), torch.randn(batch, hid)) if ours.has_cell_state else torch.randn(batch, hid)
    assert cell_parity(ours(inp, hid, bias, **kw), theirs(inp, hid, bias, **kw), x, st) < 1e-5


@pytest.mark.parametrize('ours,theirs,kw', LAYERS)
@pytest.mark.parametrize('layers,batch,T,bf,bias,give', [(1, 1, 1, False, True, False), (1, 3, 9, True, True, True), (2, 4, 5, False, False, True),
                                                         (3, 2, 4, True, True, False), (2, 16, 12, True, True, True)])
def test_layer_parity(ours, theirs, kw, layers, batch, T, bf, bias, give):
    set_seed(layers * 1000 + batch * 10 + T)
    I, H = 3, 5
    x = torch.randn(batch, T, I) if bf else torch.randn(T, batch, I)
    st = None
    if give:
        st = torch.randn(layers, batch, H)
        if ours is LSTM: st = (st, torch.randn(layers, batch, H))
    err = layer_parity(ours(I, H, layers, bias=bias, batch_first=bf, **kw), theirs(I, H, layers, bias=bias, batch_first=bf, **kw), x, st)
    assert err < 1e-5


def test_layer_outputs_equal_last_layer_states():
    set_seed(0)
    g = GRU(2, 3, num_layers=2)
    out, hn = g(torch.randn(6, 4, 2))
    check_close(out[-1], hn[-1])


def test_parity_detects_a_wrong_cell():
    "A GRU that applies the reset gate before W_hn (the paper's variant) must fail the parity test."
    class PaperGRU(GRUCell):
        def forward(self, x, h=None):
            h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
            Wr, Wz, Wn = self.weight_hh.chunk(3)
            br, bz, bn = self.bias_hh.chunk(3)
            ir, iz, i_n = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)
            r, z = torch.sigmoid(ir + h @ Wr.T + br), torch.sigmoid(iz + h @ Wz.T + bz)
            n = torch.tanh(i_n + (r * h) @ Wn.T + bn)
            return (1 - z) * n + z * h
    set_seed(1)
    with pytest.raises(AssertionError, match='differ'):
        cell_parity(PaperGRU(3, 4), nn.GRUCell(3, 4), torch.randn(5, 3), torch.randn(5, 4))


@pytest.mark.parametrize('cls', [RNNCell, LSTMCell, GRUCell])
def test_cell_finite_differences(cls):
    set_seed(2)
    cell = cls(2, 3).double()
    names = [n for n, _ in cell.named_parameters()]
    n_state = 2 if cls.has_cell_state else 1
    def fn(x, *rest):
        st, params = rest[:n_state], rest[n_state:]
        st = tuple(st) if n_state == 2 else st[0]
        return torch.func.functional_call(cell, dict(zip(names, params)), (x, st))
    inputs = (torch.randn(2, 2, dtype=torch.float64, requires_grad=True),)
    inputs += tuple(torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(n_state))
    inputs += tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('cls', [RNN, LSTM, GRU])
def test_layer_finite_differences(cls):
    set_seed(3)
    layer = cls(2, 3, num_layers=2, batch_first=True).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    def fn(x):
        out, fin = layer(x)
        return out, *(fin if isinstance(fin, tuple) else (fin,))
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_cell_bad_inputs():
    c = LSTMCell(3, 5)
    with pytest.raises(ValueError, match=r'x has shape \(4, 2\) but the cell was built with input_size=3'): c(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r'state h has shape \(4, 6\) but expected \(batch, hidden_size\) = \(4, 5\)'):
        c(torch.randn(4, 3), (torch.randn(4, 6), torch.randn(4, 5)))
    with pytest.raises(ValueError, match='whole sequence'): GRUCell(3, 5)(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match='>= 1'): GRUCell(0, 5)
    with pytest.raises(ValueError, match="'tanh' or 'relu'"): RNNCell(3, 5, nonlinearity='sigmoid')


def test_layer_bad_inputs():
    g = GRU(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r'3-D input \(seq_len, batch, input_size\), got shape \(7, 3\).*x.unsqueeze\(1\)'): g(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r'shape \(7, 5, 2\), its last dimension 2 is not the input_size=3'): g(torch.randn(7, 5, 2))
    with pytest.raises(ValueError, match=r'h0 has shape \(2, 5, 3\) but expected \(num_layers, batch, hidden_size\) = \(2, 5, 4\)'):
        g(torch.randn(7, 5, 3), torch.randn(2, 5, 3))
    l = LSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r'batch_first|\(batch, seq_len, input_size\)'): l(torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r'pair \(h0, c0\)'): l(torch.randn(5, 7, 3), torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match=r'c0 has shape \(1, 5, 2\)'): l(torch.randn(5, 7, 3), (torch.zeros(1, 5, 4), torch.zeros(1, 5, 2)))
    with pytest.raises(ValueError, match='num_layers must be'): GRU(3, 4, num_layers=0)


def test_copy_weights_errors():
    with pytest.raises(ValueError, match='num_layers=1, ours has 2'): copy_weights(GRU(3, 4, 2), nn.GRU(3, 4, 1))
    with pytest.raises(ValueError, match=r'\(12, 3\) in PyTorch.*\(9, 3\) in ours'): copy_weights(GRU(3, 3), nn.GRU(3, 4))
    with pytest.raises(ValueError, match='bidirectional'): copy_weights(GRU(3, 4), nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match='only one of the two'): copy_weights(GRUCell(3, 4, bias=False), nn.GRUCell(3, 4))
    with pytest.raises(ValueError, match=r'\(16, 3\) in PyTorch'): copy_weights(GRUCell(3, 4), nn.LSTMCell(3, 4))


@pytest.mark.parametrize('max_norm', [1e-3, 0.5, 1.0, 10.0, 1e4])
def test_clip_grad_norm_parity(max_norm):
    set_seed(4)
    m1, m2 = LSTM(3, 6, 2), nn.LSTM(3, 6, 2)
    copy_weights(m1, m2)
    x = torch.randn(5, 4, 3) * 3
    for m in (m1, m2): (m(x)[0] ** 2).sum().backward()
    ps1 = list(m1.parameters()); ps1[0].grad = None             # a parameter without a gradient is skipped
    ps2 = list(m2.parameters()); ps2[0].grad = None
    check_close(clip_grad_norm(ps1, max_norm), nn.utils.clip_grad_norm_(ps2, max_norm))
    for a, b in zip(ps1[1:], ps2[1:]): check_close(a.grad, b.grad)
    with pytest.raises(ValueError, match='max_norm must be > 0'): clip_grad_norm(ps1, -1.)
    assert float(clip_grad_norm([nn.Parameter(torch.zeros(2))], 1.0)) == 0.0


def test_state_grad_norms_shapes_and_decay():
    set_seed(5)
    cell = RNNCell(2, 8)
    with torch.no_grad(): cell.weight_hh.mul_(0.1)
    g = state_grad_norms(cell, 0.1 * torch.randn(20, 3, 2))
    assert g.shape == (20,) and bool((g[0] < g[-1] * 1e-3))


def test_seq_classifier():
    m = SeqClassifier(10, hidden_size=8)
    assert m(torch.randn(4, 40)).shape == (4, 10)
    assert SeqClassifier(3, 8, input_size=2, kind='lstm')(torch.randn(4, 7, 2)).shape == (4, 3)
    with pytest.raises(ValueError, match=r'\(batch, length, 2\).*got shape \(4, 7\)'): SeqClassifier(3, 8, input_size=2)(torch.randn(4, 7))
    with pytest.raises(ValueError, match='kind must be one of'): SeqClassifier(3, kind='transformer')


def test_char_lm_pieces():
    text = python_docs_text(5000)
    assert len(text) == 5000 and text == python_docs_text(5000)
    v = CharVocab(text)
    ids = v.encode(text)
    assert v.decode(ids) == text
    with pytest.raises(ValueError, match='not in the vocabulary'): v.encode('\u2603')
    x, y = char_windows(ids, 16, stride=8)
    assert x.shape == y.shape == ((5000 - 17) // 8 + 1, 16)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[1, :8], x[0, 8:])
    with pytest.raises(ValueError, match='1-D tensor'): char_windows(ids[None], 16)
    with pytest.raises(ValueError, match='too short'): char_windows(ids[:10], 16)
    set_seed(6)
    lm = CharLM(len(v), 8, 16)
    out = lm(x[:3])
    assert out.shape == (3, 16, len(v))
    check_close(seq_cross_entropy(out, y[:3]), nn.functional.cross_entropy(out.reshape(-1, len(v)), y[:3].reshape(-1)))


def test_sample_chars_reproducible_and_polite():
    v = CharVocab('abc de\n')
    set_seed(7)
    lm = CharLM(len(v), 4, 8)
    torch.manual_seed(0); before = torch.rand(3)
    torch.manual_seed(0)
    s1 = sample_chars(lm, v, 'ab', n=50, seed=3)
    after = torch.rand(3)
    assert torch.equal(before, after)                      # the global stream is not touched
    assert s1 == sample_chars(lm, v, 'ab', n=50, seed=3) and len(s1) == 52 and s1.startswith('ab')
    assert s1 != sample_chars(lm, v, 'ab', n=50, seed=4)
    assert lm.training                                     # the mode is put back
    with pytest.raises(ValueError, match='non-empty prompt'): sample_chars(lm, v, '', 5)
    with pytest.raises(ValueError, match='temperature must be > 0'): sample_chars(lm, v, 'a', 5, temperature=0)


def test_series_helpers():
    s = noisy_sines(100, seed=1)
    assert s.shape == (100,) and torch.equal(s, noisy_sines(100, seed=1))
    clean = noisy_sines(100, noise=0.)
    check_close(clean[:3], torch.tensor([0., sum(a * math.sin(2 * math.pi / p) for p, a in zip((50., 23., 11.), (1., .5, .3))),
                                          sum(a * math.sin(4 * math.pi / p) for p, a in zip((50., 23., 11.), (1., .5, .3)))]))
    x, y = series_windows(s, 10)
    assert x.shape == (90, 10) and y.shape == (90, 1)
    assert torch.equal(x[5], s[5:15]) and y[5, 0] == s[15]
    x, y = series_windows(s, 10, horizon=4)
    assert x.shape == (87, 10) and y.shape == (87, 4) and torch.equal(y[2], s[12:16])
    with pytest.raises(ValueError, match='1-D series'): series_windows(s[None], 10)
    with pytest.raises(ValueError, match='no window of width 10 followed by 1 values'): series_windows(s[:10], 10)
    set_seed(8)
    f = Forecaster(8)                               # one step at a time
    p = forecast(f, s, 5, 10)
    assert p.shape == (5,)
    with torch.no_grad(): check_close(p[0], f(s[-10:][None])[0, 0])
    with torch.no_grad(): check_close(p[1], f(torch.cat([s[-9:], p[:1]])[None])[0, 0])
    f3 = Forecaster(8, horizon=3)                   # three steps at a time, fed back in blocks
    p3 = forecast(f3, s, 7, 10)
    assert p3.shape == (7,)
    with torch.no_grad():
        first = f3(s[-10:][None])[0]
        check_close(p3[:3], first)
        check_close(p3[3:6], f3(torch.cat([s[-7:], first])[None])[0])
    with pytest.raises(ValueError, match='history has 5 values but the model reads windows of 10'): forecast(f, s[:5], 3, 10)
