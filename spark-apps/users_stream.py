"""SparkApplication entry point: Kafka users topic -> clean rows in Cassandra, rejects -> DLQ.

The Spark operator submits this file (``mainApplicationFile``). It only wires the settings (all
from ``USERSTREAM_*`` environment variables, see ``userstream.settings``) to the streaming query
of the ``userstream`` package installed in the image; the transforms, the Cassandra sink and the
dead-letter path live in that package and are tested there.

Exit status: 0 after a clean stop (SIGTERM from the operator), non-zero when the query fails,
so the operator's restart policy restarts it from its checkpoint.
"""

from __future__ import annotations

import logging
import sys

from userstream.errors import UserstreamError
from userstream.local.credentials import client_settings
from userstream.settings import SettingsError, load_settings
from userstream.stream.runner import run_stream


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "kafka", "cassandra"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        # the local stack's stream principal when the settings carry no credentials (no-op in a pod)
        settings = client_settings(load_settings(), "stream")
        totals = run_stream(settings)
    except (SettingsError, UserstreamError) as exc:
        logging.getLogger("users_stream").error("%s", exc)
        return 2
    logging.getLogger("users_stream").info(
        "stopped after %d micro-batches: stored %d, dead-lettered %d",
        totals.batch_count,
        totals.stored,
        totals.dead_lettered,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
