"""gpudl.data.text: loading text, the run-time default corpus, the vocabulary and truncated-BPTT batches."""
import itertools
import json

import numpy
import pytest

from gpudl.data.text import SequenceBatches, Vocabulary, default_corpus, load_text


def test_load_text_reads_utf8(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo\nwörld\n", encoding="utf-8")
    assert load_text(path) == "héllo\nwörld\n"


def test_load_text_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_text(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match="folder"):
        load_text(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt: holds no text"):
        load_text(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt: is not UTF-8 .*offset 3"):
        load_text(latin)


def test_default_corpus_is_stdlib_prose_deterministic_and_bounded():
    text = default_corpus(20_000)
    assert len(text) == 20_000
    assert text == default_corpus(20_000)
    assert set(text) <= {"\n"} | {chr(c) for c in range(32, 127)}
    assert "Return" in text or "return" in text
    assert default_corpus(500) == text[:500]
    with pytest.raises(ValueError, match="max_chars"):
        default_corpus(0)


def test_vocabulary_round_trip_and_json():
    vocab = Vocabulary.from_text("hello world")
    assert vocab.chars == sorted(set("hello world")) and len(vocab) == 8
    codes = vocab.encode("low")
    assert codes.dtype == numpy.int64 and vocab.decode(codes) == "low"
    again = Vocabulary.from_json(vocab.to_json())
    assert again.chars == vocab.chars and json.loads(vocab.to_json()) == vocab.chars
    with pytest.raises(ValueError, match="'xz'"):
        vocab.encode("zox")
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="JSON array"):
        Vocabulary.from_json('{"a": 1}')


def test_sequence_batches_are_shifted_streams_that_continue():
    data = numpy.arange(103)
    batches = SequenceBatches(data, batch_size=4, seq_len=5)
    # (103 - 1) // 4 = 25 characters per stream, 5 batches of 5 steps.
    assert len(batches) == 5
    pairs = list(batches)
    assert len(pairs) == 5
    for inputs, targets in pairs:
        assert inputs.shape == targets.shape == (4, 5)
        numpy.testing.assert_array_equal(targets, inputs + 1)       # next character
    # Row n of batch k+1 continues row n of batch k: the carried LSTM state belongs to the same stream.
    for (a, _), (b, _) in itertools.pairwise(pairs):
        numpy.testing.assert_array_equal(b[:, 0], a[:, -1] + 1)
    numpy.testing.assert_array_equal(pairs[0][0][:, 0], [0, 25, 50, 75])


def test_sequence_batches_refuse_too_little_text():
    with pytest.raises(ValueError, match="too few"):
        SequenceBatches(numpy.arange(20), batch_size=4, seq_len=5)
    with pytest.raises(ValueError, match="positive"):
        SequenceBatches(numpy.arange(20), batch_size=0, seq_len=5)


def test_text_batches_are_the_sequence_batches_on_a_device():
    from gpudl.data import TextBatches
    data = numpy.arange(41)
    loader = TextBatches(data, batch_size=4, seq_len=5, device="cpu")
    plain = list(SequenceBatches(data, batch_size=4, seq_len=5))
    assert len(loader) == len(plain) == 2
    for (x, y), (px, py) in zip(loader, plain):
        numpy.testing.assert_array_equal(x, px)
        numpy.testing.assert_array_equal(y, py)


@pytest.mark.parametrize("ranks", [2, 3])
def test_shards_split_the_streams_of_every_batch_across_the_ranks(ranks):
    from gpudl.data import TextBatches
    data = numpy.arange(157)
    plain = list(SequenceBatches(data, batch_size=6, seq_len=5))
    shards = [list(TextBatches(data, batch_size=6, seq_len=5, shard=(rank, ranks))) for rank in range(ranks)]
    assert [len(batches) for batches in shards] == [len(plain)] * ranks      # the ranks stay in step
    for k, (inputs, targets) in enumerate(plain):
        for rank, batches in enumerate(shards):
            numpy.testing.assert_array_equal(batches[k][0], inputs[rank::ranks])
            numpy.testing.assert_array_equal(batches[k][1], targets[rank::ranks])
        read = numpy.sort(numpy.concatenate([batches[k][0].ravel() for batches in shards]))
        numpy.testing.assert_array_equal(read, numpy.sort(inputs.ravel()))      # every character once


def test_each_rank_carries_the_state_of_its_own_streams():
    """A stateful char-LSTM on each shard computes, batch after batch, the rows of its streams of one process's."""
    from gpudl.models import CharLSTM
    data = numpy.random.default_rng(0).integers(0, 7, 200)

    def logits(shard):
        model = CharLSTM(7, 5, dtype=numpy.float64, rng=numpy.random.default_rng(1))
        return [model.forward(x) for x, _ in SequenceBatches(data, batch_size=6, seq_len=4, shard=shard)]

    whole = logits(None)
    assert len(whole) > 2
    for rank in range(3):
        for k, part in enumerate(logits((rank, 3))):
            numpy.testing.assert_allclose(part, whole[k][rank::3], rtol=1e-12, atol=1e-12)


def test_shards_refuse_fewer_streams_than_ranks_and_a_bad_shard():
    with pytest.raises(ValueError, match="batch_size 2 is the global number of streams and must give each of the 3 "
                                         "ranks a stream at least"):
        SequenceBatches(numpy.arange(100), batch_size=2, seq_len=5, shard=(0, 3))
    with pytest.raises(ValueError, match=r"SequenceBatches: shard must be \(rank, size\) with 0 <= rank < size"):
        SequenceBatches(numpy.arange(100), batch_size=4, seq_len=5, shard=(2, 2))
