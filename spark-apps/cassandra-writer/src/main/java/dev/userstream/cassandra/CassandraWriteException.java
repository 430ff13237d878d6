package dev.userstream.cassandra;

/** Cassandra refused the writer for good, or stayed unreachable past the retry deadline. */
public final class CassandraWriteException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public CassandraWriteException(String message, Throwable cause) {
    super(message, cause);
  }
}
