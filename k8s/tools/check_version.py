#!/usr/bin/env python3
"""Fail, naming the tool and the versions, when a tool is older than the project needs.

    check_version.py NAME "$(NAME version)" MINIMUM      e.g. check_version.py skaffold v2.18.0 2.19.0

The first X.Y.Z in the version text is compared with MINIMUM. Standard library only.
"""

from __future__ import annotations

import re
import sys


def parse(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def check(name: str, version_text: str, minimum: str) -> str | None:
    """None when ``version_text`` is at least ``minimum``, else the error message."""
    wanted = parse(minimum)
    if wanted is None:
        return f"{name}: minimum version {minimum!r} is not X.Y.Z"
    found = parse(version_text)
    if found is None:
        return f"{name}: cannot read a version from {version_text.strip()!r}; {name} >= {minimum} is needed"
    if found < wanted:
        shown = ".".join(map(str, found))
        return f"{name} {shown} is older than {minimum}, the oldest this project works with: upgrade {name}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    error = check(*argv)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
