"""The streaming consumer: parse, clean and validate Kafka records, upsert them into Cassandra and
dead-letter the rest (Spark Structured Streaming)."""
