"""Names from results and plugins made safe for file names and links.

A defense may be called `../../x` or `<script>`: pages are named by `slug`, which keeps
only [a-z0-9-] and adds a hash of the whole name (distinct names never share a file),
and a reference is linked only if it is an http(s) URL (no `javascript:`).
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlparse


def slug(name: str) -> str:
    """A file stem that cannot leave the folder and is unique per name."""
    base = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:40] or "x"
    return f"{base}-{hashlib.sha256(str(name).encode()).hexdigest()[:8]}"


def external_url(ref: str) -> str | None:
    """The reference if it is an absolute http(s) URL, else None (shown as text only)."""
    ref = (ref or "").strip()
    p = urlparse(ref)
    return ref if p.scheme in ("http", "https") and p.netloc and not any(c.isspace() for c in ref) else None
