"""Lag of the streaming query: Kafka end offsets minus the offsets in the query's checkpoint.

Spark's Kafka source commits no consumer-group offsets; the truth is the newest file in
``<checkpoint>/offsets``. ``make status`` pipes this file into the SparkApplication's driver pod
(``python - < k8s/stream_lag.py``), which has the settings, the Kafka credentials and the checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def checkpoint_offsets(checkpoint: str, topic: str) -> dict[int, int]:
    offsets_dir = Path(checkpoint.removeprefix("file://")) / "offsets"
    batches = sorted((int(p.name), p) for p in offsets_dir.glob("*") if p.name.isdigit())
    if not batches:
        return {}
    for line in batches[-1][1].read_text(encoding="utf-8").splitlines()[2:]:
        source = json.loads(line)
        if isinstance(source, dict) and topic in source:
            return {int(partition): int(offset) for partition, offset in source[topic].items()}
    return {}


def main() -> int:
    from kafka import KafkaConsumer, TopicPartition

    from userstream.settings import load_settings

    settings = load_settings()
    topic = settings.kafka_topic
    options = settings.kafka_client_options()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, **options)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()
    done = checkpoint_offsets(settings.checkpoint_location, topic)
    lag = {p: end[p] - done.get(p, 0) for p in end}
    total, processed = sum(end.values()), sum(done.values())
    print(f"topic {topic}: {total} messages, processed {processed}, lag {sum(lag.values())}")
    for p in sorted(lag):
        print(f"  partition {p}: end {end[p]} processed {done.get(p, 0)} lag {lag[p]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
