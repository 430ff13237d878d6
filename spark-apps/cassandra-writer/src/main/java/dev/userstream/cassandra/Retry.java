package dev.userstream.cassandra;

import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Capped exponential backoff (with jitter) until the configured deadline. */
final class Retry {
  private static final Logger LOG = LoggerFactory.getLogger(Retry.class);

  private Retry() {}

  /** The delay before attempt {@code attempt + 1}: initial * 2^attempt, capped, 80-100 %. */
  static long backoffMillis(WriterConfig config, int attempt) {
    long delay = config.backoffInitialMillis << Math.min(attempt, 20);
    delay = Math.min(delay, config.backoffMaxMillis);
    return Math.max(1, (long) (delay * (0.8 + 0.2 * ThreadLocalRandom.current().nextDouble())));
  }

  /** {@code action} until it succeeds; transient errors are retried until the deadline. */
  static <T> T untilDeadline(WriterConfig config, String what, Supplier<T> action) {
    long began = System.nanoTime();
    for (int attempt = 0; ; attempt++) {
      try {
        return action.get();
      } catch (RuntimeException error) {
        long waitedMillis = (System.nanoTime() - began) / 1_000_000;
        if (Errors.classify(error) != Errors.TRANSIENT) {
          throw new CassandraWriteException(
              "cannot " + what + " at " + config.describe() + ": " + Errors.describe(error), error);
        }
        if (waitedMillis >= config.retryDeadlineMillis) {
          throw new CassandraWriteException(
              "cannot "
                  + what
                  + " at "
                  + config.describe()
                  + " for "
                  + waitedMillis / 1000
                  + " s (USERSTREAM_CASSANDRA_RETRY_DEADLINE_SECONDS): "
                  + Errors.describe(error),
              error);
        }
        long delay = backoffMillis(config, attempt);
        LOG.warn(
            "cannot {} at {} ({}); retrying in {} ms", what, config.describe(), Errors.describe(error), delay);
        try {
          Thread.sleep(delay);
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          throw new CassandraWriteException("interrupted while waiting to " + what, interrupted);
        }
      }
    }
  }
}
