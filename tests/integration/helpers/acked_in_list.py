#!/usr/bin/env python3
"""acked_in_list.py ACKED LIST_JSON: the serials in ACKED (one a line: what
clients were answered 200) against `mtls ca list --json` output. Prints
"rows distinct missing [first missing...]": rows in the inventory, distinct
serials among them, answered serials not there exactly once."""
import json, sys

acked = [l.strip() for l in open(sys.argv[1]) if l.strip()]
raw = open(sys.argv[2]).read().strip()
try:
    rows = json.loads(raw)
except ValueError:
    rows = [json.loads(l) for l in raw.splitlines() if l.strip()]
if isinstance(rows, dict):
    rows = next(v for v in rows.values() if isinstance(v, list))
serials = [r["serial"] for r in rows]
missing = [s for s in acked if serials.count(s) != 1]
print(len(serials), len(set(serials)), len(missing), *missing[:3])
