from airflow.sdk.log import mask_secret

from bhv360_backup.runtime import looks_secret


def test_a_sensitive_name_or_a_registered_secret_value_looks_secret():
    mask_secret("registered-canary-7f3a")
    assert looks_secret("bhv360_smtp_password", "anything")
    assert looks_secret("api_key", "")
    assert looks_secret("bhv360_note", "a value holding registered-canary-7f3a")
    assert not looks_secret("bhv360_backup_root", "/data/backups")
