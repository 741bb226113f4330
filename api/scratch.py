"""Private temporary folders an app makes for itself when it is given no path (the CDS store's; a
testing app's decision record): removed when the process that made them exits, so that an integrator
who builds apps without configuration leaves no folder of seen tokens or records behind in /tmp."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def private_folder(prefix: str) -> str:
    """A new folder only its owner can enter (``mkdtemp``: mode 0700), removed at this process's exit."""
    path = tempfile.mkdtemp(prefix=prefix)
    maker = os.getpid()

    def _remove() -> None:
        if os.getpid() == maker:   # a forked worker inherits the hook; the folder is the maker's to remove
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_remove)
    return path
