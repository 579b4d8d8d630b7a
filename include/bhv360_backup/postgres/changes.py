"""Committed changes of a database, read from a logical replication slot with the built-in
``test_decoding`` output plugin through SQL (``pg_logical_slot_peek_changes`` and
``pg_replication_slot_advance``).

Why ``test_decoding``: it ships with PostgreSQL, is allowed by the default ``output_plugin_libraries``,
and needs no publication, so it changes nothing for the application (a ``FOR ALL TABLES`` publication
makes every UPDATE and DELETE on a table without a replica identity fail). Its text lines carry each
value in its type's text form, which a replay casts back with ``'<text>'::<type>``. The line format is
PostgreSQL's own and stable (its regression tests pin it); this module parses it.

A line is ``BEGIN <xid>``, ``COMMIT <xid> (at <timestamp>)``, or
``table <schema>.<name>: INSERT|UPDATE|DELETE: <column>[<type>]:<value> …`` (an UPDATE whose key changed,
or of a table with REPLICA IDENTITY FULL, has ``old-key: … new-tuple: …``; a DELETE of a table without a
replica identity has ``(no-tuple-data)``), ``table <a>, <b>: TRUNCATE: [restart_seqs] [cascade]``, or a
logical decoding message (``pg_logical_emit_message``): ``message: transactional: 0|1 prefix: <p>, sz: <n>
content:<bytes>``. Any other line stops the capture, naming the line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

UNCHANGED_TOAST = "unchanged-toast-datum"
_BARE = re.compile(r"[^\s\[\].:,\"]+")
_COMMIT = re.compile(r"^COMMIT (\d+) \(at (.+)\)$")
_MESSAGE = re.compile(r"^message: transactional: ([01]) prefix: (.*), sz: (\d+) content:", re.DOTALL)
_ROW_CHANGE = re.compile(r'table ([^\s\[\].:,"]+)\.([^\s\[\].:,"]+): (INSERT|UPDATE|DELETE): ')  # the common head
# one column, ``name[type]:value `` (what :meth:`_Line.columns_by_scanning` reads a character at a time)
_COLUMN = re.compile(r'(?:"((?:[^"]|"")*)"|([^\s\[\].:,"]+))\[(.*?)\]:'
                     r"(?:(unchanged-toast-datum)|B?'((?:[^']|'')*)'|([^ ']*)) ?")


class ChangeFormatError(ValueError):
    """A line this parser does not understand: the capture stops rather than guess."""


class _Line:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> ChangeFormatError:
        return ChangeFormatError(f"{what} at character {self.at} of a change line: {self.text[:200]!r}")

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.at):
            raise self.fail(f"expected {literal!r}")
        self.at += len(literal)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.at)

    def quoted(self, quote: str, what: str) -> str:
        """The text between ``quote`` characters at the cursor, a doubled ``quote`` standing for one."""
        parts, position = [], self.at + 1
        while True:
            close = self.text.find(quote, position)
            if close < 0:
                raise self.fail(f"unterminated quoted {what}")
            parts.append(self.text[position:close])
            if self.text.startswith(quote, close + 1):
                parts.append(quote)
                position = close + 2
                continue
            self.at = close + 1
            return "".join(parts)

    def identifier(self) -> str:
        if self.peek('"'):
            return self.quoted('"', "identifier")
        match = _BARE.match(self.text, self.at)
        if not match:
            raise self.fail("expected an identifier")
        self.at = match.end()
        return match.group()

    def table(self) -> tuple[str, str]:
        schema = self.identifier()
        self.expect(".")
        return schema, self.identifier()

    def value(self) -> str | None:
        if self.peek("B'"):  # a bit string: B'1010' is the text 1010
            self.at += 1
        if self.peek("'"):
            return self.quoted("'", "value")
        end = self.text.find(" ", self.at)
        end = len(self.text) if end < 0 else end
        token, self.at = self.text[self.at:end], end
        return None if token == "null" else token

    def columns(self, stop: str | None = None) -> tuple[list[list[Any]], list[str]]:
        """``[[name, type, value], …]`` and the names of unchanged TOASTed columns, up to ``stop`` or the end:
        a column at a time by one regular expression (the capture's hot path); where it does not match,
        read again a character at a time, which names what is wrong."""
        columns: list[list[Any]] = []
        unchanged: list[str] = []
        start, at, text = self.at, self.at, self.text
        while at < len(text) and not (stop and text.startswith(stop, at)):
            match = _COLUMN.match(text, at)
            if match is None:
                self.at = start
                return self.columns_by_scanning(stop)
            quoted_name, bare_name, column_type, toast, quoted_value, token = match.groups()
            name = bare_name if quoted_name is None else quoted_name.replace('""', '"')
            if toast:
                unchanged.append(name)
            elif quoted_value is not None:
                columns.append([name, column_type, quoted_value.replace("''", "'")])
            else:
                columns.append([name, column_type, None if token == "null" else token])
            at = match.end()
        self.at = at
        return columns, unchanged

    def columns_by_scanning(self, stop: str | None = None) -> tuple[list[list[Any]], list[str]]:
        columns: list[list[Any]] = []
        unchanged: list[str] = []
        while self.at < len(self.text) and not (stop and self.peek(stop)):
            name = self.identifier()
            self.expect("[")
            end = self.text.find("]:", self.at)
            if end < 0:
                raise self.fail("expected ]: after a column's type")
            column_type, self.at = self.text[self.at:end], end + 2
            if self.peek(UNCHANGED_TOAST):
                self.at += len(UNCHANGED_TOAST)
                unchanged.append(name)
            else:
                columns.append([name, column_type, self.value()])
            if self.peek(" "):
                self.at += 1
        return columns, unchanged


def parse_timestamp(text: str) -> datetime:
    """A commit time as the server prints it (``2026-11-26 22:52:02.05982+00``)."""
    text = text.strip()
    match = re.match(r"^(.*[+-]\d\d)(:?\d\d)?$", text)
    if match and not match.group(2):
        text = match.group(1) + ":00"
    moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    if moment.tzinfo is None:
        raise ChangeFormatError(f"commit time without a zone: {text!r}")
    return moment


def parse(data: str) -> dict[str, Any]:
    """One ``test_decoding`` line as a change: ``{"begin": xid}``, ``{"commit": xid, "time": …}``,
    ``{"op": "insert"|"update"|"delete", "table": [schema, name], "new"/"old_key": [[name, type, value]…],
    "unchanged": [names]}``, ``{"op": "truncate", "tables": […], "restart_seqs": bool, "cascade": bool}`` or
    ``{"message": prefix, "transactional": bool, "size": n}`` (a message's content is not kept: a replay has
    nothing to do with it)."""
    if data.startswith("message: "):
        match = _MESSAGE.match(data)
        if not match:
            raise ChangeFormatError(f"a logical decoding message line this parser does not understand: {data[:200]!r}")
        return {"message": match.group(2), "transactional": match.group(1) == "1", "size": int(match.group(3))}
    if data.startswith("BEGIN "):
        return {"begin": int(data[6:])}
    if data.startswith("COMMIT "):
        match = _COMMIT.match(data)
        if not match:
            raise ChangeFormatError(f"a COMMIT line without its time (include-timestamp is off?): {data!r}")
        return {"commit": int(match.group(1)), "time": parse_timestamp(match.group(2)).isoformat()}
    head = _ROW_CHANGE.match(data)
    if head and not data.startswith(("old-key: ", "(no-tuple-data)"), head.end()):  # the hot path: a plain row
        line = _Line(data)
        line.at = head.end()
        return _row_change({"op": head.group(3).lower(), "table": [head.group(1), head.group(2)]}, *line.columns())
    line = _Line(data)
    line.expect("table ")
    tables = [line.table()]
    while line.peek(", "):
        line.at += 2
        tables.append(line.table())
    line.expect(": ")
    for action in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        if line.peek(action + ":"):
            line.at += len(action) + 1
            break
    else:
        raise line.fail("expected INSERT, UPDATE, DELETE or TRUNCATE")
    rest = line.text[line.at:].strip()
    if action == "TRUNCATE":
        flags = set(rest.split()) - {"(no-flags)"}
        return {"op": "truncate", "tables": [list(t) for t in tables], "restart_seqs": "restart_seqs" in flags,
                "cascade": "cascade" in flags}
    change: dict[str, Any] = {"op": action.lower(), "table": list(tables[0])}
    if line.peek(" "):
        line.at += 1
    if rest == "(no-tuple-data)":
        change["old_key"] = None
        return change
    if action == "UPDATE" and line.peek("old-key: "):
        line.at += len("old-key: ")
        change["old_key"], _ = line.columns(stop="new-tuple: ")
        line.expect("new-tuple: ")
    return _row_change(change, *line.columns())


def _row_change(change: dict[str, Any], columns: list[list[Any]], unchanged: list[str]) -> dict[str, Any]:
    """A row change with its columns: a delete's are the old key, the others' the new row."""
    if change["op"] == "delete":
        change["old_key"] = columns
    else:
        change["new"] = columns
        if unchanged:
            change["unchanged"] = unchanged
    return change
