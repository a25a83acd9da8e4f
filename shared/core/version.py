"""The Postwire release version, sent as ``User-Agent: Postwire/<version>`` on every webhook."""

from __future__ import annotations

POSTWIRE_VERSION = "0.1.0"
