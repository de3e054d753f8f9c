"""Stream entries as messages; the typed field readers refuse with the field named."""

from __future__ import annotations

import pytest

from himari_l3.streams.wire import MessageRejected, decode_entry, flag, integer, number, text


def test_fields_and_data_forms() -> None:
    """Flat fields decode to strings; a lone ``data`` field to its JSON object."""
    assert decode_entry({b"a": b"1", "b": "x"}) == {"a": "1", "b": "x"}
    assert decode_entry({b"data": b'{"a": 1, "b": [true]}'}) == {"a": 1, "b": [True]}


@pytest.mark.parametrize("entry, field", [
    ({b"data": b"[1, 2]"}, "data"), ({b"data": b"{nope"}, "data"),
    ({b"data": b'{"x": NaN}'}, "data"), ({b"a": b"\xff\xfe"}, "a"),
    ({b"\xff": b"1"}, "field name")])
def test_undecodable_entries_are_refused(entry: dict[bytes, bytes], field: str) -> None:
    """Non-UTF-8, non-JSON, a JSON array or a NaN constant: refused, field named."""
    with pytest.raises(MessageRejected) as info:
        decode_entry(entry)
    assert info.value.field == field


def test_readers() -> None:
    """Numbers from text or JSON, whole numbers, flags, text; null-ish values are absent."""
    msg = {"n": "0.5", "i": "3", "f": 3.0, "b": "yes", "t": " abc ", "z": "null", "e": ""}
    assert number(msg, "n", 0, 1) == 0.5
    assert integer(msg, "i", 0, 5) == 3 and integer(msg, "f", 0, 5) == 3
    assert flag(msg, "b") is True and flag({"b": 0}, "b") is False
    assert text(msg, "t") == "abc"
    assert number(msg, "z", 0, 1) is None and text(msg, "e") is None
    for bad in ("nan", "inf", "-inf", "1e999", True, [1], "0x10"):
        with pytest.raises(MessageRejected, match="n was"):
            number({"n": bad}, "n", -10, 10)
    with pytest.raises(MessageRejected, match="expected a value"):
        number({}, "n", 0, 1, required=True)
    with pytest.raises(MessageRejected):
        integer({"i": "2.5"}, "i", 0, 5)
    with pytest.raises(MessageRejected):
        text({"t": "a\x00b"}, "t")
