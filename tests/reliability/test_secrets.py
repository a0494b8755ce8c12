"""Secret scan over every tracked file (``git ls-files``): no private key, cloud key, access
token or password in a URL is committed, and no ``.env`` is tracked.

Runs in CI with the rest of ``make test``. A finding that is not a secret (a made-up value
in a parser test) is allowed by its exact text and path, with the reason, below.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = {
    "private key": re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key id": re.compile(rb"\b(?:AKIA|ASIA|AGPA|AROA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        rb"(?i)aws_?secret_?access_?key\W{0,4}[=:]\W{0,4}[A-Za-z0-9/+=]{40}\b"
    ),
    "GitHub token": re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    "Slack token": re.compile(rb"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Stripe or OpenAI style secret key": re.compile(rb"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}"),
    "password in a URL": re.compile(
        rb"\b[a-z][a-z0-9+.-]{1,20}://[^/\s:@\"'<>]+:[^/\s@\"'<>]+@[\w.-]+"
    ),
}
ALLOWED = {
    (
        "tests/unit/test_feast_config.py",
        b"redis://user:" + b"p%40ss@cache",  # split: the allow-list must not match itself
    ): "made-up credentials of a URL-parsing test; no such host",
}


def scan(paths: list[Path], root: Path) -> list[tuple[str, int, str, str]]:
    """``(path, line, kind, text)`` for every pattern match not in :data:`ALLOWED`."""
    findings = []
    for path in paths:
        try:
            content = (root / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue  # deleted in the working tree, or a submodule
        if b"\x00" in content[:8192]:
            continue  # binary
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(content):
                if (str(path), match.group()) in ALLOWED:
                    continue
                line = content.count(b"\n", 0, match.start()) + 1
                findings.append(
                    (str(path), line, kind, match.group()[:12].decode(errors="replace"))
                )
    return findings


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
        ).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [Path(name.decode()) for name in listed.split(b"\x00") if name]


def test_no_secret_is_committed(reliability):
    files = tracked_files()
    findings = scan(files, ROOT)
    assert not findings, "possible secrets committed (path, line, kind, start):\n" + "\n".join(
        map(str, findings)
    )
    assert not [path for path in files if path.name == ".env" or path.suffix in (".pem", ".key")]
    reliability.record("secret_scan", {"files_scanned": len(files), "findings": len(findings)})


def test_the_scanner_finds_planted_secrets(tmp_path: Path):
    # Built at run time so that this file itself holds no secret-shaped text.
    planted = {
        "key.txt": b"-----BEGIN " + b"RSA PRIVATE KEY-----\nMIIE...\n",
        "aws.cfg": b"id = AKIA" + b"ABCDEFGHIJKLMNOP\naws_secret_access_key = " + b"a" * 40 + b"\n",
        "gh.sh": b"export TOKEN=ghp_" + b"x" * 36 + b"\n",
        "db.py": b'URL = "postgresql://muma:' + b'hunter2@db.internal:5432/muma"\n',
    }
    for name, content in planted.items():
        (tmp_path / name).write_bytes(content)
    kinds = {finding[2] for finding in scan([Path(name) for name in planted], tmp_path)}
    assert kinds == {
        "private key",
        "AWS access key id",
        "AWS secret access key",
        "GitHub token",
        "password in a URL",
    }
    (tmp_path / "ok.py").write_bytes(b'URL = "redis://127.0.0.1:6379/0"  # token: env\n')
    assert scan([Path("ok.py")], tmp_path) == []
