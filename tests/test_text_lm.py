"""The shipped text, the vocabulary, next-character windows, the char-LSTM and the row-by-row RNN."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from course_lib import char_lm, text
from course_lib.models.row_rnn import RowRNNClassifier


def test_sonnets_are_shipped_complete():
    sonnets = text.load_text("shakespeare_sonnets")
    assert sonnets.startswith("THE SONNETS\nby William Shakespeare")
    numerals = re.findall(r"^\s*([IVXLC]+)\s*$", sonnets, flags=re.M)
    assert len(numerals) == 154 and numerals[0] == "I" and numerals[-1] == "CLIV"
    assert "Shall I compare thee to a summer's day?" in sonnets


def test_unknown_text_is_rejected():
    with pytest.raises(ValueError, match="unknown text"):
        text.load_text("war_and_peace")


def test_vocabulary_round_trip():
    vocab = text.Vocabulary("hello world")
    assert len(vocab) == 8 and vocab.chars[0] == " "
    codes = vocab.encode("low")
    assert codes.dtype == torch.long and codes.tolist() == [vocab.chars.index(c) for c in "low"]
    assert vocab.decode(codes) == "low"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("xyz")


def test_make_sequences_targets_are_shifted_inputs():
    data = torch.arange(23)
    x, y = text.make_sequences(data, seq_len=5)
    assert x.shape == y.shape == (4, 5)
    assert x[1].tolist() == [5, 6, 7, 8, 9] and y[1].tolist() == [6, 7, 8, 9, 10]
    x, y = text.make_sequences(data, seq_len=5, stride=2)
    assert x[1].tolist() == [2, 3, 4, 5, 6] and len(x) == 9


def test_sequence_loss_is_cross_entropy_over_all_positions():
    torch.manual_seed(0)
    model = char_lm.CharLSTM(vocab_size=11, embed_dim=4, hidden_size=8)
    x, y = torch.randint(0, 11, (3, 7)), torch.randint(0, 11, (3, 7))
    logits, _ = model(x)
    assert logits.shape == (3, 7, 11)
    expected = nn.CrossEntropyLoss()(logits.permute(0, 2, 1), y)  # torch's (N, C, T) convention
    torch.testing.assert_close(char_lm.sequence_loss(model, x, y), expected)


def test_sampling_at_low_temperature_is_greedy():
    torch.manual_seed(1)
    model = char_lm.CharLSTM(vocab_size=9, embed_dim=4, hidden_size=8)
    prompt = torch.tensor([1, 2, 3])
    out = char_lm.sample(model, prompt, length=6, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    seq = prompt.clone()
    for _ in range(6):  # greedy decoding by re-reading the whole sequence each step
        logits, _ = model(seq.view(1, -1))
        seq = torch.cat([seq, logits[0, -1].argmax().view(1)])
    assert out.tolist() == seq[3:].tolist()


def test_training_lowers_the_loss_on_a_repetitive_text():
    vocab = text.Vocabulary("abcd")
    data = vocab.encode("abcd" * 200)
    train = text.make_sequences(data, seq_len=16)
    model = char_lm.CharLSTM(len(vocab), embed_dim=4, hidden_size=16)
    hist = char_lm.train_char_lm(model, train, train, epochs=15, batch_size=16, lr=1e-2, device="cpu",
                                 progress=False)
    assert hist.val_loss[-1] < 0.2 < 1.0 < hist.train_loss[0], (hist.train_loss[0], hist.val_loss[-1])
    assert max(hist.grad_norm) > 0


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_row_rnn_uses_the_last_hidden_state(mode, bidirectional):
    torch.manual_seed(2)
    model = RowRNNClassifier(mode, input_size=6, hidden_size=5, num_layers=2, bidirectional=bidirectional,
                             num_classes=3)
    images = torch.rand(4, 1, 7, 6)  # 7 rows of 6 pixels
    out, _ = model.rnn(images[:, 0])  # (N, T, D*H): the last layer's outputs
    if bidirectional:  # forward direction ends at t = T, backward at t = 1
        last = torch.cat([out[:, -1, :5], out[:, 0, 5:]], dim=1)
    else:
        last = out[:, -1]
    torch.testing.assert_close(model(images), model.head(last))


def test_training_stops_at_the_time_budget():
    vocab = text.Vocabulary("abcd")
    train = text.make_sequences(vocab.encode("abcd" * 200), seq_len=16)
    model = char_lm.CharLSTM(len(vocab), embed_dim=4, hidden_size=8)
    hist = char_lm.train_char_lm(model, train, epochs=5, batch_size=4, max_seconds=0.0, device="cpu",
                                 progress=False)
    assert len(hist.train_loss) == 1 and len(hist.seconds) == 1
