"""A seeded randomized differential test of point-in-time restore against the real thing: random
transactions (inserts, updates that change keys, deletes, TOASTed values, NULLs) over tables of several
type families and every replica-identity kind, committed with ``synchronous_commit`` on and off, captured
in several segments while a database backup is taken in the middle; the state of every table recorded at
many moments; restores to a sample of those moments must equal the recorded state (nothing here is a
reason to refuse: no schema change, every table keyed or FULL, so a refusal fails the test too).

Reproducible: ``BHV360_SOAK_SEED`` picks the seed (printed on failure); ``make soak`` runs it longer
(``BHV360_SOAK_ROUNDS``, ``BHV360_SOAK_SAMPLES``)."""

from __future__ import annotations

import json
import os
import random
import string

import psycopg
import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.sources.changes import ChangeSource
from tests.fixtures import postgres
from tests.fixtures.chain import SLOT, capture, dump, restore_to, run, state

SEED = int(os.environ.get("BHV360_SOAK_SEED", "360"))
ROUNDS = int(os.environ.get("BHV360_SOAK_ROUNDS", "8"))
SAMPLES = int(os.environ.get("BHV360_SOAK_SAMPLES", "3"))
SCHEMA = """
CREATE TABLE by_key (id int PRIMARY KEY, code char(6), amount numeric(7,2), doc jsonb, body text);
CREATE TABLE by_all (a int, b text, at timestamptz);
ALTER TABLE by_all REPLICA IDENTITY FULL;
CREATE TABLE by_index (k uuid NOT NULL, bits varbit(16), nums int[], note varchar(20));
CREATE UNIQUE INDEX by_index_k ON by_index (k);
ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_k;
CREATE TABLE computed (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, x int, doubled int GENERATED ALWAYS AS (x * 2) STORED);
"""
TABLES = ["public.by_key", "public.by_all", "public.by_index", "public.computed"]


def literal(value) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


class Workload:
    """Random statements over the four tables, remembering which keys exist."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.keys: set[int] = set()
        self.uuids: set[str] = set()
        self.all_rows: list[int] = []
        self.computed: set[int] = set()
        self.next_computed = 1

    def text(self) -> str | None:
        roll = self.rng.random()
        if roll < 0.15:
            return None
        if roll < 0.25:  # TOASTed: incompressible, well past the 2 kB threshold
            return "".join(self.rng.choices(string.ascii_letters + string.digits, k=self.rng.randint(3000, 9000)))
        return "".join(self.rng.choices(string.ascii_lowercase + " é'", k=self.rng.randint(0, 30)))

    def short(self, length: int) -> str | None:
        text = self.text()
        return None if text is None else text[:length]

    def statement(self) -> str:
        rng, table = self.rng, self.rng.choice(TABLES)
        if table == "public.by_key":
            if self.keys and rng.random() < 0.5:
                key = rng.choice(sorted(self.keys))
                if rng.random() < 0.3:
                    self.keys.discard(key)
                    return f"DELETE FROM by_key WHERE id = {key}"
                new = key if rng.random() < 0.6 else max(self.keys) + rng.randint(1, 50)  # a key change
                self.keys.discard(key)
                self.keys.add(new)
                return (f"UPDATE by_key SET id = {new}, code = {literal(self.short(6))}, "
                        f"amount = {literal(round(rng.uniform(-9999, 9999), 2)) if rng.random() > 0.1 else 'NULL'}, "
                        f"body = {literal(self.text())} WHERE id = {key}")
            key = max(self.keys, default=0) + rng.randint(1, 10)
            self.keys.add(key)
            doc = literal(json.dumps({"k": rng.randint(0, 9), "note": self.short(10)}))
            return (f"INSERT INTO by_key VALUES ({key}, {literal(self.short(6))}, "
                    f"{round(rng.uniform(-9999, 9999), 2)}, {doc}, {literal(self.text())})")
        if table == "public.by_all":
            if self.all_rows and rng.random() < 0.5:
                a = rng.choice(self.all_rows)
                if rng.random() < 0.5:
                    return f"DELETE FROM by_all WHERE ctid = (SELECT ctid FROM by_all WHERE a = {a} LIMIT 1)"
                return (f"UPDATE by_all SET b = {literal(self.text())} "
                        f"WHERE ctid = (SELECT ctid FROM by_all WHERE a = {a} LIMIT 1)")
            a = rng.randint(0, 20)  # duplicates on purpose: identical rows stand for each other
            self.all_rows.append(a)
            at = "NULL" if rng.random() < 0.2 else "clock_timestamp()"
            return f"INSERT INTO by_all VALUES ({a}, {literal(self.text())}, {at})"
        if table == "public.by_index":
            if self.uuids and rng.random() < 0.5:
                k = rng.choice(sorted(self.uuids))
                if rng.random() < 0.3:
                    self.uuids.discard(k)
                    return f"DELETE FROM by_index WHERE k = '{k}'"
                bits = "".join(rng.choices("01", k=rng.randint(1, 16)))
                return f"UPDATE by_index SET bits = B'{bits}', nums = '{{{rng.randint(0, 9)}, NULL}}' WHERE k = '{k}'"
            k = f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
            self.uuids.add(k)
            return f"INSERT INTO by_index VALUES ('{k}', NULL, '{{1,2}}', {literal(self.short(20))})"
        if self.computed and rng.random() < 0.5:
            key = rng.choice(sorted(self.computed))
            if rng.random() < 0.3:
                self.computed.discard(key)
                return f"DELETE FROM computed WHERE id = {key}"
            return f"UPDATE computed SET x = {rng.randint(-100, 100)} WHERE id = {key}"
        self.computed.add(self.next_computed)
        self.next_computed += 1
        return f"INSERT INTO computed (x) VALUES ({rng.randint(-100, 100)})"


def test_restores_to_random_moments_equal_the_recorded_state(logical_db, logical_cluster, tmp_path):
    rng = random.Random(SEED)
    locations = [LocalLocation(tmp_path / "backups")]
    run(logical_db, SCHEMA)
    source = ChangeSource(logical_db, SLOT)
    capture(source, locations)
    dump(logical_db, locations)
    workload, moments = Workload(rng), []
    with psycopg.connect(host=logical_db.host, port=logical_db.port, user=logical_db.user, dbname=logical_db.dbname,
                         autocommit=True) as connection:
        for round_ in range(ROUNDS):
            for _ in range(rng.randint(3, 12)):
                with connection.transaction():
                    connection.execute(f"SET LOCAL synchronous_commit = {rng.choice(['on', 'off'])}")
                    for _ in range(rng.randint(1, 6)):
                        connection.execute(workload.statement())
            moment = connection.execute("SELECT clock_timestamp()").fetchone()[0]
            moments.append((moment, state(logical_db, TABLES)))
            if rng.random() < 0.6 or round_ == ROUNDS - 1:
                capture(source, locations)
            if round_ == ROUNDS // 2:
                dump(logical_db, locations)  # a database backup in the middle: a chain of its own
    for moment, expected in rng.sample(moments, min(SAMPLES, len(moments))):
        try:
            target, plan, report = restore_to(logical_cluster, locations, (), moment, tmp_path)
        except BackupError as refused:
            pytest.fail(f"seed {SEED}: a restore to {moment} was refused: {refused}")
        try:
            assert state(target, TABLES) == expected, f"seed {SEED}: the restore to {moment} differs"
        finally:
            postgres.drop_database(target)
