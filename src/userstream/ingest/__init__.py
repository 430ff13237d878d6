"""Ingestion: fetch users from a source, stage the raw documents in PostgreSQL, publish them to Kafka."""
