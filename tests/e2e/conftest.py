"""Fixtures of this layer's dispatcher tests, defined in ``tests.support.dispatch``:

- ``seeder`` (module): writes endpoints and events by SQL and announces their deliveries.
- ``dispatchers`` (module) / ``dispatchers_per_test`` (function): start dispatcher processes
  with the test environment and stop them afterwards.
"""

from __future__ import annotations

from tests.support.dispatch import dispatchers, dispatchers_per_test, seeder

__all__ = ["dispatchers", "dispatchers_per_test", "seeder"]
