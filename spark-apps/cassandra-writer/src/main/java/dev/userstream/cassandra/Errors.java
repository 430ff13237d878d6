package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.AllNodesFailedException;
import com.datastax.oss.driver.api.core.auth.AuthenticationException;
import com.datastax.oss.driver.api.core.servererrors.InvalidQueryException;
import com.datastax.oss.driver.api.core.servererrors.QueryValidationException;
import com.datastax.oss.driver.api.core.type.codec.CodecNotFoundException;
import java.util.List;

/** How the writer treats a failed request (java-driver-core 4.19 exception hierarchy). */
enum Errors {
  /** Writing the same row again fails the same way: the row is dead-lettered, never retried. */
  ROW_REJECTED,
  /** Cassandra is unreachable, overloaded, timing out or restarting: retry with backoff. */
  TRANSIENT,
  /** Not the row's fault and not going away by waiting (credentials, grants, schema): fail. */
  FATAL;

  static Errors classify(Throwable error) {
    Throwable cause = unwrap(error);
    // a value the driver cannot encode for the column, or one Cassandra refuses as invalid
    // (e.g. an empty partition key, a value above a size limit)
    if (cause instanceof InvalidQueryException
        || cause instanceof CodecNotFoundException
        || cause instanceof IllegalArgumentException
        || cause instanceof ClassCastException
        || cause instanceof ArithmeticException) {
      return ROW_REJECTED;
    }
    // unauthorized, syntax error, unknown keyspace: every row would fail alike
    if (cause instanceof QueryValidationException || cause instanceof AuthenticationException) {
      return FATAL;
    }
    if (cause instanceof AllNodesFailedException nodes && authenticationFailed(nodes)) {
      return FATAL;
    }
    return TRANSIENT;
  }

  private static boolean authenticationFailed(AllNodesFailedException nodes) {
    for (List<Throwable> errors : nodes.getAllErrors().values()) {
      for (Throwable error : errors) {
        if (unwrap(error) instanceof AuthenticationException) {
          return true;
        }
      }
    }
    return false;
  }

  static Throwable unwrap(Throwable error) {
    Throwable current = error;
    while ((current instanceof java.util.concurrent.CompletionException
            || current instanceof java.util.concurrent.ExecutionException)
        && current.getCause() != null) {
      current = current.getCause();
    }
    return current;
  }

  static String describe(Throwable error) {
    Throwable cause = unwrap(error);
    String text = cause.getClass().getSimpleName() + ": " + cause.getMessage();
    return text.length() > 500 ? text.substring(0, 500) : text;
  }
}
