"""Every malformed restore request is refused with a message that names the problem."""

from __future__ import annotations

import pytest

from bhv360_backup.repository.layout import BackupType
from bhv360_backup.restore.request import InvalidRequest, parse_request

ROOT, BUCKET = "/var/backups/bhv360", "bhv360-backups"


def parse(body):
    return parse_request(body, backup_root=ROOT, bucket=BUCKET)


def test_the_seeds_bodies_are_accepted():
    storage = parse({"type": "storage", "paths": {"storage": f"{ROOT}/storage/20261122T020000Z"}})
    assert storage.type == BackupType.STORAGE and storage.paths["storage"].backup_id == "20261122T020000Z"
    full = parse({"type": "full", "paths": {"database": f"{ROOT}/database/20261121T030000Z/database.dump",
                                            "storage": f"s3://{BUCKET}/storage/20261121T030000Z",
                                            "config": "20261121T030000Z"}})
    assert {name: spec.kind for name, spec in full.paths.items()} == {"database": "local", "storage": "s3", "config": "id"}
    assert full.target_conn_id == "bhv360_restore_db" and not full.confirm_overwrite and not full.dry_run


INVALID = [
    ("not an object", ["x"], "must be a JSON object"),
    ("unknown type", {"type": "everything", "paths": {}}, "type must be one of database, storage, config, full"),
    ("missing type", {"paths": {"database": "latest"}}, "type must be one of"),
    ("paths not an object", {"type": "database", "paths": "latest"}, "paths must be an object"),
    ("path missing for type", {"type": "full", "paths": {"database": "latest", "storage": "latest"}},
     "paths.config is missing for a full restore"),
    ("path for another type", {"type": "database", "paths": {"database": "latest", "storage": "latest"}},
     "paths.storage is not part of a database restore"),
    ("dot-dot", {"type": "database", "paths": {"database": f"{ROOT}/database/../../../etc/passwd"}},
     "may not contain '..'"),
    ("outside the root", {"type": "database", "paths": {"database": "/etc/passwd"}}, "is outside the local backup root"),
    ("sibling of the root", {"type": "database", "paths": {"database": f"{ROOT}-evil/database/20261122T020000Z"}},
     "is outside the local backup root"),
    ("other bucket", {"type": "database", "paths": {"database": "s3://evil-bucket/database/20261122T020000Z"}},
     "only s3://bhv360-backups is a backup location"),
    ("other scheme", {"type": "database", "paths": {"database": "https://example.com/dump"}}, "uses https://"),
    ("file scheme", {"type": "database", "paths": {"database": "file:///var/backups/bhv360/database/x"}},
     "uses file://"),
    ("relative path", {"type": "database", "paths": {"database": "database/20261122T020000Z"}},
     "is not 'latest', a backup id"),
    ("type mismatch", {"type": "database", "paths": {"database": f"{ROOT}/storage/20261122T020000Z"}},
     "points to a storage backup, not a database backup"),
    ("not a backup id", {"type": "database", "paths": {"database": f"{ROOT}/database/yesterday"}},
     "which is not a backup id"),
    ("no backup folder", {"type": "database", "paths": {"database": f"{ROOT}/database"}},
     "does not name a backup folder"),
    ("NUL byte", {"type": "database", "paths": {"database": f"{ROOT}/database/2026\x00"}}, "control characters"),
    ("empty path", {"type": "database", "paths": {"database": ""}}, "must be a non-empty string"),
    ("number path", {"type": "database", "paths": {"database": 7}}, "must be a non-empty string"),
    ("flag not boolean", {"type": "database", "paths": {"database": "latest"}, "confirm_overwrite": "yes"},
     "confirm_overwrite must be true or false"),
    ("bad connection id", {"type": "database", "paths": {"database": "latest"}, "target_conn_id": "../x y"},
     "target_conn_id must be a connection id"),
    ("unknown field", {"type": "database", "paths": {"database": "latest"}, "drop_everything": True},
     "unknown field(s): drop_everything"),
    ("bad storage target", {"type": "storage", "paths": {"storage": "latest"}, "storage_target": "ftp://x"},
     "storage_target must be"),
    ("empty point in time", {"type": "database", "paths": {"database": "latest"}, "point_in_time": ""},
     "point_in_time is empty"),
    ("point in time without zone", {"type": "database", "paths": {"database": "latest"},
                                    "point_in_time": "2026-11-26T14:05:00"}, "has no zone"),
    ("point in time not a time", {"type": "database", "paths": {"database": "latest"}, "point_in_time": "noon"},
     "is not an ISO 8601 time"),
    ("point in time without seconds", {"type": "database", "paths": {"database": "latest"},
                                       "point_in_time": "2026-11-26T14:05+01:00"}, "date-time form (RFC 3339"),
    ("point in time in basic form", {"type": "database", "paths": {"database": "latest"},
                                     "point_in_time": "20261126T140500Z"}, "date-time form (RFC 3339"),
    ("point in time in the future", {"type": "database", "paths": {"database": "latest"},
                                     "point_in_time": "2999-01-01T00:00:00Z"}, "is in the future"),
    ("point in time before year 1 in UTC", {"type": "database", "paths": {"database": "latest"},
                                            "point_in_time": "0001-01-01T00:00:00+00:01"},
     "is outside the years a backup can have"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in INVALID], ids=[name for name, _, _ in INVALID])
def test_invalid_requests_are_refused_with_their_problem(body, message):
    with pytest.raises(InvalidRequest) as refused:
        parse(body)
    assert message in str(refused.value)


def test_all_problems_are_reported_together():
    with pytest.raises(InvalidRequest) as refused:
        parse({"type": "full", "paths": {"database": "/etc/passwd"}, "dry_run": "no"})
    assert len(refused.value.problems) == 4  # outside root, storage missing, config missing, dry_run
