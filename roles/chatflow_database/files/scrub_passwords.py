#!/usr/bin/env python3
"""Replace clear-text passwords in PostgreSQL server logs, in place (plain and .gz files).

Releases before 0.5.0 of chatflow.db sent CREATE/ALTER ROLE ... PASSWORD '<clear text>', and
log_statement = ddl logged it.  A SCRAM verifier or an md5 hash stays; anything else quoted after
PASSWORD becomes '<removed>'.  Prints one line per file changed; exit 0 also when nothing was found.
With --check, changes nothing and prints what it would scrub.
Usage: scrub_passwords.py [--check] LOG [LOG ...]
"""

import gzip
import os
import re
import sys
import tempfile

CLEAR = re.compile(rb"(PASSWORD\s+)'(?!SCRAM-SHA-256\$|md5[0-9a-f]{32}'|<removed>')(?:[^'\n]|'')*'", re.IGNORECASE)


def scrub(path, check):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    cleaned, count = CLEAR.subn(rb"\1'<removed>'", data)
    if not count or check:
        return count
    if path.endswith(".gz"):
        replace_gz(path, cleaned)
    else:
        # The live log stays the same file: the server (pg_ctlcluster's stderr) keeps it open and appends
        # to it, as with logrotate's copytruncate; lines written during these few milliseconds may be lost.
        with open(path, "r+b") as handle:
            handle.write(cleaned)
            handle.truncate()
    return count


def replace_gz(path, cleaned):
    """A rotated log nobody writes to: a new file, renamed over it, with its owner and mode."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".scrub-")
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
        out.write(cleaned)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


def main(args):
    check = "--check" in args
    for path in [a for a in args if a != "--check"]:
        count = scrub(path, check)
        if count:
            print("%s %d password(s) in %s" % ("would scrub" if check else "scrubbed", count, path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
