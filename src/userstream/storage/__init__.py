"""Cassandra, where the stream stores users: the client, the migration and the roles."""
