"""A BHV360-like database, generated: organisations, locations, emergency-response staff,
certificates, drills and incidents, with text, uuids, jsonb, timestamps and numbers that
compress like real application data (about 4:1 under ``pg_dump -Fc``, not 50:1 like pgbench)."""

from __future__ import annotations

import psycopg

SCHEMA_SQL = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE organisations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    kvk_number text NOT NULL,
    city text NOT NULL,
    created_at timestamptz NOT NULL,
    settings jsonb NOT NULL
);
CREATE TABLE locations (
    id uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisations(id),
    name text NOT NULL,
    address text NOT NULL,
    postal_code text NOT NULL,
    floors integer NOT NULL,
    latitude numeric(9, 6) NOT NULL,
    longitude numeric(9, 6) NOT NULL
);
CREATE TABLE staff (
    id uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisations(id),
    location_id uuid NOT NULL REFERENCES locations(id),
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text NOT NULL,
    phone text NOT NULL,
    role text NOT NULL,
    active boolean NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE certificates (
    id uuid PRIMARY KEY,
    staff_id uuid NOT NULL REFERENCES staff(id),
    kind text NOT NULL,
    issued_on date NOT NULL,
    expires_on date NOT NULL,
    issuer text NOT NULL,
    document_path text NOT NULL
);
CREATE TABLE drills (
    id uuid PRIMARY KEY,
    location_id uuid NOT NULL REFERENCES locations(id),
    held_at timestamptz NOT NULL,
    scenario text NOT NULL,
    duration_minutes integer NOT NULL,
    participants integer NOT NULL,
    evaluation text NOT NULL,
    findings jsonb NOT NULL
);
CREATE TABLE incidents (
    id uuid PRIMARY KEY,
    location_id uuid NOT NULL REFERENCES locations(id),
    reported_by uuid REFERENCES staff(id),
    occurred_at timestamptz NOT NULL,
    category text NOT NULL,
    severity smallint NOT NULL,
    description text NOT NULL,
    actions jsonb NOT NULL
);
CREATE TABLE app_settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON staff (organisation_id);
CREATE INDEX ON certificates (staff_id, expires_on);
CREATE INDEX ON incidents (location_id, occurred_at);
"""

# Deterministic "random" picks: hashtext of a seed string, so two runs make the same data.
_FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.pick(words text[], seed text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT words[1 + abs(hashtext(seed)) % array_length(words, 1)] $$;
CREATE OR REPLACE FUNCTION pg_temp.prose(seed text, n integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(pg_temp.pick(ARRAY['de','het','een','brand','ontruiming','verzamelplaats','trap',
    'nooduitgang','blusmiddel','kantoor','magazijn','verdieping','alarm','melding','ploegleider','collega',
    'bezoeker','EHBO','AED','reanimatie','rook','lift','sleutel','controle','oefening','evaluatie','tijd',
    'minuten','binnen','buiten','snel','rustig','duidelijk','onduidelijk','route','bord','verlichting',
    'deur','gesloten','open','geblokkeerd','vrij','gecontroleerd','gemeld','afgehandeld','vervolgactie',
    'training','certificaat','verlopen','geldig','noodplan','coordinator','aanwezig','afwezig'],
    seed || ':' || i), ' ') FROM generate_series(1, n) AS i $$;
"""

_FIRST = "ARRAY['Anna','Bram','Chantal','Daan','Eva','Fleur','Gijs','Hanna','Iris','Jeroen','Kim','Lars','Mila','Noah','Olga','Pieter','Sanne','Thijs','Vera','Wouter']"
_LAST = "ARRAY['de Vries','Jansen','Bakker','Visser','Smit','Meijer','de Boer','Mulder','de Groot','Bos','Vos','Peters','Hendriks','van Dijk','Dekker','Brouwer','van Leeuwen','Willems','Kok','Janssen']"
_CITY = "ARRAY['Amsterdam','Rotterdam','Utrecht','Eindhoven','Groningen','Tilburg','Almere','Breda','Nijmegen','Zwolle','Arnhem','Haarlem','Leiden','Delft','Maastricht']"

FILL_SQL = f"""
INSERT INTO organisations
SELECT md5('org' || o)::uuid, 'Organisatie ' || pg_temp.pick({_LAST}, 'on' || o) || ' ' || o,
       lpad((abs(hashtext('kvk' || o)) % 100000000)::text, 8, '0'), pg_temp.pick({_CITY}, 'oc' || o),
       timestamptz '2019-01-01' + (o || ' hours')::interval * 7,
       jsonb_build_object('language', 'nl', 'drill_interval_months', 6 + o % 7, 'notify', o % 2 = 0)
FROM generate_series(1, __ORGS__) o;

INSERT INTO locations
SELECT md5('loc' || o || '-' || l)::uuid, md5('org' || o)::uuid, 'Vestiging ' || l,
       pg_temp.prose('addr' || o || l, 3) || ' ' || (1 + abs(hashtext('nr' || o || l)) % 300),
       (1000 + abs(hashtext('pc' || o || l)) % 9000)::text || ' AB', 1 + abs(hashtext('fl' || o || l)) % 12,
       50.75 + (abs(hashtext('lat' || o || l)) % 2800) / 1000.0, 3.35 + (abs(hashtext('lon' || o || l)) % 3800) / 1000.0
FROM generate_series(1, __ORGS__) o, generate_series(1, 10) l;

INSERT INTO staff
SELECT md5('st' || o || '-' || s)::uuid, md5('org' || o)::uuid, md5('loc' || o || '-' || (1 + s % 10))::uuid,
       pg_temp.pick({_FIRST}, 'fn' || o || s), pg_temp.pick({_LAST}, 'ln' || o || s),
       'medewerker' || s || '@organisatie' || o || '.nl', '+316' || lpad((abs(hashtext('ph' || o || s)) % 100000000)::text, 8, '0'),
       pg_temp.pick(ARRAY['bhv-er','ploegleider','ehbo-er','coordinator'], 'r' || o || s), s % 17 <> 0,
       timestamptz '2020-01-01' + ((abs(hashtext('sc' || o || s)) % 2000) || ' days')::interval
FROM generate_series(1, __ORGS__) o, generate_series(1, 250) s;

INSERT INTO certificates
SELECT md5('cert' || o || '-' || s || '-' || c)::uuid, md5('st' || o || '-' || s)::uuid,
       pg_temp.pick(ARRAY['BHV basis','BHV herhaling','EHBO','AED','Ploegleider'], 'ck' || o || s || c),
       date '2021-01-01' + abs(hashtext('ci' || o || s || c)) % 1500,
       date '2022-01-01' + abs(hashtext('ci' || o || s || c)) % 1500,
       pg_temp.pick(ARRAY['NIBHV','Het Oranje Kruis','Rode Kruis','Veiligheidsregio'], 'cs' || o || s || c),
       'certificates/' || o || '/' || md5('st' || o || '-' || s) || '/' || c || '.pdf'
FROM generate_series(1, __ORGS__) o, generate_series(1, 250) s, generate_series(1, 2) c;

INSERT INTO drills
SELECT md5('dr' || o || '-' || l || '-' || d)::uuid, md5('loc' || o || '-' || l)::uuid,
       timestamptz '2021-01-01' + ((abs(hashtext('dt' || o || l || d)) % 1700) || ' days')::interval,
       pg_temp.prose('sc' || o || l || d, 8), 5 + abs(hashtext('du' || o || l || d)) % 55,
       3 + abs(hashtext('pa' || o || l || d)) % 80, pg_temp.prose('ev' || o || l || d, 40),
       jsonb_build_object('evacuation_minutes', 2 + abs(hashtext('em' || o || l || d)) % 15,
                          'issues', pg_temp.prose('is' || o || l || d, 6), 'passed', d % 5 <> 0)
FROM generate_series(1, __ORGS__) o, generate_series(1, 10) l, generate_series(1, 20) d;

INSERT INTO incidents
SELECT md5('in' || o || '-' || l || '-' || i)::uuid, md5('loc' || o || '-' || l)::uuid,
       md5('st' || o || '-' || (1 + abs(hashtext('rb' || o || l || i)) % 250))::uuid,
       timestamptz '2021-01-01' + ((abs(hashtext('it' || o || l || i)) % 1700) || ' days')::interval
         + ((abs(hashtext('ih' || o || l || i)) % 86400) || ' seconds')::interval,
       pg_temp.pick(ARRAY['brand','letsel','onwel','ontruiming','gaslek','wateroverlast','inbraak'], 'ic' || o || l || i),
       1 + abs(hashtext('sv' || o || l || i)) % 5, pg_temp.prose('de' || o || l || i, 50),
       jsonb_build_array(pg_temp.prose('a1' || o || l || i, 5), pg_temp.prose('a2' || o || l || i, 5))
FROM generate_series(1, __ORGS__) o, generate_series(1, 10) l, generate_series(1, 15) i;

INSERT INTO app_settings (key, value) VALUES
  ('notifications', '{{"email": true, "sms": false}}'),
  ('drill_reminder_days', '30'),
  ('certificate_warning_days', '60');
ANALYZE;
"""

MB_PER_ORGANISATION = 0.42


def organisations_for_mb(megabytes: float) -> int:
    """How many organisations make a database of about ``megabytes`` (table + index size)."""
    return max(1, round(megabytes / MB_PER_ORGANISATION))


def create_demo_database(connection: psycopg.Connection, organisations: int) -> None:
    """Create the schema and fill it; ``connection`` is to an empty database."""
    with connection.transaction():
        connection.execute(SCHEMA_SQL)
        connection.execute(_FUNCTIONS_SQL)
        connection.execute(FILL_SQL.replace("__ORGS__", str(int(organisations))))
