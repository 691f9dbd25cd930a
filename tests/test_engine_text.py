"""Stop strings and streaming holdback on incrementally decoded text (``agentkit.engine.text``): no model."""

from __future__ import annotations

from tiny_engine import ByteTokenizer

from agentkit.engine.text import RowText


class ChunkTokenizer(ByteTokenizer):
    """Decodes id sequences of arbitrary multi-character 'tokens' (for RowText tests)."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def feed(pieces: list[str], stop: list[str]) -> tuple[RowText, list[str], int]:
    tok = ChunkTokenizer(pieces)
    row = RowText(tok.decode, stop)
    shown = []
    used = 0
    for i in range(len(pieces)):
        used += 1
        done = row.push(i)
        shown.append(row.stream_delta(final=done))
        if done:
            break
    else:
        row.flush()
        shown.append(row.stream_delta(final=True))
    return row, shown, used


def test_stop_string_spanning_tokens_is_cut_exactly():
    row, shown, used = feed(["The answer", " is 4.\n", "\nQues", "tion: next", " more"], ["\n\nQuestion:"])
    assert row.stopped
    assert row.text == "The answer is 4."
    assert "".join(shown) == row.text
    assert used == 4  # stopped as soon as the stop string was complete


def test_stop_string_ending_mid_token():
    row, shown, _ = feed(["abc", "dXYZe", "fgh"], ["XY"])
    assert row.stopped and row.text == "abcd"
    assert "".join(shown) == "abcd"


def test_earliest_of_several_stops_wins():
    row, _, _ = feed(["one ", "two three"], ["three", "two"])
    assert row.text == "one "


def test_streaming_holds_back_possible_stop_prefix():
    row, shown, _ = feed(["Hello\n", "\nQ", "uiet please"], ["\n\nQuestion:"])
    assert not row.stopped
    assert shown[0] == "Hello"  # "\n" may start the stop string: held back
    assert shown[1] == ""  # "\n\nQ" still may
    assert "".join(shown) == "Hello\n\nQuiet please" == row.text


def test_no_stop_text_returned_whole():
    row, shown, _ = feed(["a", "b", "c"], [])
    assert row.text == "abc" and "".join(shown) == "abc" and not row.stopped


def test_multibyte_character_waits_for_all_bytes():
    tok = ByteTokenizer()
    ids = tok.encode("é!", add_special_tokens=False)  # é is two bytes
    row = RowText(tok.decode, [])
    row.push(ids[0])
    assert row.text == ""  # half a character is never shown
    row.push(ids[1])
    assert row.text == "é"
    row.push(ids[2])
    assert row.text == "é!"


def test_prompt_context_keeps_leading_space():
    pieces = ["Answer", ":", " 42"]
    row = RowText(ChunkTokenizer(pieces).decode, [], prompt_ids=[0, 1])
    row.push(2)
    assert row.text == " 42"
