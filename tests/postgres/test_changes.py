"""Parsing test_decoding's lines, as a PostgreSQL 15 server printed them (no server needed)."""

from __future__ import annotations

import pytest

from bhv360_backup.postgres.changes import ChangeFormatError, parse

INSERT = ("table public.a: INSERT: id[integer]:1 n[numeric]:1.23456789012345678901234567890 big[text]:'x''y' "
          "j[jsonb]:'{\"k\": [1, 2]}' b[bytea]:'\\x00ff' ts[timestamp with time zone]:'2026-11-26 22:52:02.051896+00' "
          "arr[integer[]]:'{1,2}' \"Odd Col\"[text]:'it''s \"x\" y' f[double precision]:NaN ok[boolean]:true "
          "v[character varying]:'a b' nothing[text]:null")


def test_begin_and_commit():
    assert parse("BEGIN 728") == {"begin": 728}
    assert parse("COMMIT 728 (at 2026-11-26 22:52:02.05982+00)") == {"commit": 728,
                                                                      "time": "2026-11-26T22:52:02.059820+00:00"}
    assert parse("COMMIT 9 (at 2026-03-29 03:00:00.5+02)")["time"] == "2026-03-29T03:00:00.500000+02:00"


def test_an_insert_keeps_every_value_as_text_with_its_type():
    change = parse(INSERT)
    assert change["op"] == "insert" and change["table"] == ["public", "a"]
    assert change["new"] == [
        ["id", "integer", "1"], ["n", "numeric", "1.23456789012345678901234567890"], ["big", "text", "x'y"],
        ["j", "jsonb", '{"k": [1, 2]}'], ["b", "bytea", "\\x00ff"],
        ["ts", "timestamp with time zone", "2026-11-26 22:52:02.051896+00"], ["arr", "integer[]", "{1,2}"],
        ["Odd Col", "text", 'it\'s "x" y'], ["f", "double precision", "NaN"], ["ok", "boolean", "true"],
        ["v", "character varying", "a b"], ["nothing", "text", None]]


def test_updates_with_and_without_a_key_change_and_an_unchanged_toasted_value():
    plain = parse("table public.a: UPDATE: id[integer]:1 big[text]:unchanged-toast-datum n[numeric]:2")
    assert plain == {"op": "update", "table": ["public", "a"], "new": [["id", "integer", "1"], ["n", "numeric", "2"]],
                     "unchanged": ["big"]}
    moved = parse('table public."Weird Table": UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 '
                  "m[\"My Mood\"]:'sad' t[text]:'line1\nline2'")
    assert moved["table"] == ["public", "Weird Table"] and moved["old_key"] == [["id", "integer", "1"]]
    assert moved["new"] == [["id", "integer", "2"], ["m", '"My Mood"', "sad"], ["t", "text", "line1\nline2"]]


def test_deletes_and_truncates():
    assert parse("table public.a: DELETE: id[integer]:1") == {"op": "delete", "table": ["public", "a"],
                                                            "old_key": [["id", "integer", "1"]]}
    assert parse("table public.nopk: DELETE: (no-tuple-data)")["old_key"] is None
    assert parse('table public.nopk, public."Weird Table": TRUNCATE: restart_seqs cascade') == {
        "op": "truncate", "tables": [["public", "nopk"], ["public", "Weird Table"]], "restart_seqs": True,
        "cascade": True}
    assert parse("table s.t: TRUNCATE: (no-flags)")["restart_seqs"] is False


@pytest.mark.parametrize("line", ["table public.a INSERT: id[integer]:1", "table public.a: MERGE: x[int]:1",
                                  "table public.a: INSERT: id[integer]:'open", "COMMIT 7"])
def test_a_line_it_does_not_understand_stops_the_capture(line):
    with pytest.raises(ChangeFormatError):
        parse(line)


def test_bit_strings_are_read_as_their_text():
    change = parse("table public.t: INSERT: b[bit]:B'1010' v[bit varying]:B'' n[integer]:null")
    assert change["new"] == [["b", "bit", "1010"], ["v", "bit varying", ""], ["n", "integer", None]]


def test_logical_decoding_messages_are_read_not_refused():
    assert parse("message: transactional: 0 prefix: bhv360-capture, sz: 0 content:") == {
        "message": "bhv360-capture", "transactional": False, "size": 0}
    assert parse("message: transactional: 1 prefix: app, sz: 9 content:he,\nllo sz") == {
        "message": "app", "transactional": True, "size": 9}
    with pytest.raises(ChangeFormatError, match="message line"):
        parse("message: something else")


def test_the_fast_column_reader_agrees_with_the_character_scanner_on_random_lines():
    """Seeded: columns as test_decoding prints them (quoted and bare names, types with brackets and
    modifiers, quoted values with doubled quotes and spaces, bare numbers, null, bit strings, unchanged
    TOASTed values) read alike by the regular expression and by the scanner it stands in for."""
    import random

    from bhv360_backup.postgres.changes import _Line

    rng = random.Random(2026)
    alphabet = "ab yz'\"[]:.,é0\\"
    types = ["integer", "text", "text[]", "character varying(20)[]", "numeric(5,2)", "\"my type\"", "public.mood"]

    def column() -> str:
        name = rng.choice(["id", "note_2", '"odd ""name"""', '"with space"', "déjà"])
        kind = rng.choice(types)
        value = rng.choice([
            str(rng.randint(-99, 99)), "null", "unchanged-toast-datum", f"B'{rng.choice(['1', '0101'])}'",
            "'" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))).replace("'", "''") + "'"])
        return f"{name}[{kind}]:{value}"

    for _ in range(2000):
        text = " ".join(column() for _ in range(rng.randint(1, 6)))
        fast, slow = _Line(text), _Line(text)
        assert fast.columns() == slow.columns_by_scanning(), text
        assert fast.at == slow.at
