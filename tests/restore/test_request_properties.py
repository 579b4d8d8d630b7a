"""Hostile input: no restore request, however malformed, crashes the parser or points outside the
two locations."""

from __future__ import annotations

import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from bhv360_backup.restore.request import InvalidRequest, parse_request

ROOT, BUCKET = "/var/backups/bhv360", "bhv360-backups"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
paths = st.one_of(
    st.text(max_size=80),
    st.builds(lambda tail: f"{ROOT}/{tail}", st.text(max_size=60)),
    st.builds(lambda bucket, key: f"s3://{bucket}/{key}", st.sampled_from([BUCKET, "other", ""]), st.text(max_size=40)),
    st.sampled_from(["latest", "20261126T000000Z", f"{ROOT}/database/../../etc", f"{ROOT}/../x", "file:///etc/passwd",
                     f"{ROOT}/database/20261126T000000Z/\x00", f"{ROOT}-other/database/20261126T000000Z"]),
)
bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["database", "storage", "config", "full", "x", ""]) | json_values},
    optional={"paths": st.dictionaries(st.sampled_from(["database", "storage", "config", "other"]),
                                       paths | json_values, max_size=4) | json_values,
              "target_conn_id": st.text(max_size=20) | json_values, "dry_run": json_values,
              "confirm_overwrite": json_values, "storage_target": st.text(max_size=30) | json_values},
)


def check(body):
    try:
        request = parse_request(body, backup_root=ROOT, bucket=BUCKET)
    except InvalidRequest as refused:
        assert refused.problems and all(isinstance(p, str) and p for p in refused.problems)
        return
    for spec in request.paths.values():
        if spec.kind == "local":
            assert posixpath.normpath(spec.value).startswith(ROOT + "/")
            assert ".." not in spec.value.split("/") and "\x00" not in spec.value
        elif spec.kind == "s3":
            assert spec.value.startswith(f"s3://{BUCKET}/") and ".." not in spec.value.split("/")
        else:
            assert spec.kind in ("latest", "id")


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_any_request_is_accepted_safely_or_refused_by_name(body):
    check(body)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_refused_or_accepted_safely(body):
    check(body)
