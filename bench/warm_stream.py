"""The stream over the same backlog several times in one JVM (the benchmark's warm phase).

Run by ``pipeline_bench.py`` as a subprocess with the benchmark's settings in the environment.
Each pass streams the whole topic from a fresh checkpoint (rows are upserted again with the same
ids), so later passes run on code the JVM has already compiled: how fast the stream is once its
JIT has warmed up, which a single pass over a 40,000-record backlog never reaches. Prints one JSON
object per pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from userstream.settings import load_settings
from userstream.stream.runner import caught_up, run_stream, stream_session, topic_end_offsets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings()
    spark = stream_session(settings)
    targets = topic_end_offsets(settings)
    for number in range(args.passes):
        run = settings.model_copy(update={"checkpoint_location": tempfile.mkdtemp(prefix="userstream-warm-")})
        began = time.monotonic()
        totals = run_stream(run, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=600)
        busy = totals.busy_seconds()
        print(
            json.dumps(
                {
                    "pass": number,
                    "records": totals.rows_in,
                    "batches": totals.batch_count,
                    "busy_s": round(busy, 2),
                    "records_per_s": round(totals.rows_in / busy) if busy else 0,
                    "wall_s": round(time.monotonic() - began, 1),
                }
            ),
            flush=True,
        )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
