"""`doit cleanup` keeps the newest versions in version order, non-PEP 440 ones included.

Moved from test_review_release.py. Kept apart from test_cleanup.py, where
FRONTEND is a Label for the pure decision tests, not the channel folder this
test names.
"""

from __future__ import annotations

from conftest import doit
from instructing import FRONTEND, instruct


def test_cleanup_keeps_the_numerically_newest_non_pep440_version(example):
    for version in ("1.5.0", "2.0.0-hotfix1"):
        instruct(example, version)
    doit(example, check=True)
    doit(example, "cleanup", "--keep", "1", check=True)
    assert (example / FRONTEND / "2.0.0-hotfix1" / "pod.json").is_file()
    assert not (example / FRONTEND / "1.5.0").exists()
