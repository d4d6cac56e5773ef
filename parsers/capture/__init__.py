"""``pagereplay record``: capture a page-allocator trace and its /proc snapshots on a Linux machine.

The pieces (each importable without numpy or pyarrow, so a capture stays light on the machine
it traces):

- ``tracefs``   find or mount tracefs, read and write its files, undo every change (``Changes``);
- ``untraced``  kprobe specs for the kernel paths that move pages with no kmem tracepoint, and the
                reference parser of the lines they print;
- ``record``    the capture itself (``record(RecordOptions)``), restoring tracing on any exit;
- ``script``    the same capture as a POSIX ``sh`` script (``generate_script``) for machines
                without Python (busybox is enough);
- ``manifest``  ``manifest.json``: what a capture folder holds;
- ``folder``    reading a capture folder (ours or the shared reference folders):
                ``read_capture_folder(DIR) -> CaptureFolder``.

The folder layout is documented in ``docs/capture.md``.
"""

from __future__ import annotations

from .errors import CaptureAborted, CaptureError, CaptureFolderError, MissingEventError, NotRootError, TracefsError
from .folder import CaptureFolder, read_capture_folder

__all__ = [
    "CaptureAborted",
    "CaptureError",
    "CaptureFolder",
    "CaptureFolderError",
    "MissingEventError",
    "NotRootError",
    "TracefsError",
    "read_capture_folder",
]
