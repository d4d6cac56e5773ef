"""The e2e guest's Python capture: ``parsers.capture.record.record()``, what ``pagereplay record`` runs.

``pyrecord.py OUT MODE`` (started by /pyrun.sh with the host's Python, see tests/e2e/guest_python.py):
``main`` traces /workload.sh with --untraced --contention (buffers from the rate probe, zstd);
``killed`` a command that ends with SIGKILL (stream mode: no duration); ``sigint`` waits until the SIGINT /init sends.
Notes go to stderr as ``note: ...``, a capture error as one ``error: ...`` line (exit 1).
"""

import json
import os
import sys

sys.path[:0] = os.environ["PAGEREPLAY_SYSPATH"].split(":")

from pathlib import Path

from parsers.capture.errors import CaptureError
from parsers.capture.record import RecordOptions, record

KILLED = "dd if=/dev/zero of=/tmp/k bs=1M count=4 2>/dev/null; rm /tmp/k; kill -9 $$"
MODES = {
    "main": {"duration": 30, "untraced": True, "contention": True, "command": ["sh", "/workload.sh"]},
    "killed": {"untraced": True, "command": ["sh", "-c", KILLED]},  # no --duration: trace_pipe streamed
    "sigint": {"buffer_mb": 2, "untraced": True},
}


def main() -> int:
    out, mode = sys.argv[1], sys.argv[2]
    opts = RecordOptions(output=Path(out), on_note=lambda m: print(f"note: {m}", file=sys.stderr, flush=True),
                         **MODES[mode])
    try:
        res = record(opts)
    except CaptureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"path": str(res.path), "overruns": res.manifest["overruns"], "notes": res.notes}))
    return 0


sys.exit(main())
