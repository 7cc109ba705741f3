#!/usr/bin/env python3
"""The page-level limit of a series of etcd snapshot files: per day, the 4 KiB pages that
differ from the previous day's at the same offset (day 1: all pages), concatenated and
compressed as one `zstd -3` stream. Also the pages not seen on any earlier day (by content).

    python3 bench/page_limit.py DAY-1.db DAY-2.db ...

Prints one line per day: `day pages changed new limit_changed limit_new` (limit in bytes)."""
import subprocess
import sys

PAGE = 4096


def zstd3(data: bytes) -> int:
    out = subprocess.run(["zstd", "-3", "-q", "-c"], input=data, capture_output=True, check=True)
    return len(out.stdout)


def main(files):
    prev = None
    seen = set()
    print("day pages changed new limit_changed limit_new")
    for day, path in enumerate(files, 1):
        with open(path, "rb") as f:
            b = f.read()
        pages = [b[i:i + PAGE] for i in range(0, len(b), PAGE)]
        if prev is None:
            changed = pages
        else:
            changed = [p for i, p in enumerate(pages) if i >= len(prev) or prev[i] != p]
        new = []
        for p in pages:
            if p not in seen:
                seen.add(p)
                new.append(p)
        print(day, len(pages), len(changed), len(new), zstd3(b"".join(changed)), zstd3(b"".join(new)),
              flush=True)
        prev = pages


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
