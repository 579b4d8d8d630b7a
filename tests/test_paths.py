"""Relative paths that cannot leave their folder."""

from __future__ import annotations

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.paths import check_relative_path


@pytest.mark.parametrize("path", ["blobs/sha256/ab/" + "a" * 64, "org 1/staff ü/BHV basis.pdf", "...", "a/..b/c.",
                                  ".hidden/file", "a"])
def test_a_path_inside_its_folder_is_kept_as_it_is(path):
    assert check_relative_path(path) == path


@pytest.mark.parametrize("path", ["", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/",
                                  "a\\..\\b", "a\x00b"])
def test_a_path_that_could_leave_its_folder_is_refused(path):
    with pytest.raises(BackupError, match="unsafe relative path"):
        check_relative_path(path)
