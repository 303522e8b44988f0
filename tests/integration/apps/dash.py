"""The integration app plus one schedule, for the dashboard tests (its Schedules page).

The workers run ``tests.integration.apps.basic:app``; the dashboard loads this one, which has
the same tasks and topics and adds a schedule nobody fires during the test.
"""

from __future__ import annotations

from datetime import timedelta

from tests.integration.apps.basic import build

app = build()
app.schedule("add", every=timedelta(hours=1), name="hourly-add", args=(1, 2))
