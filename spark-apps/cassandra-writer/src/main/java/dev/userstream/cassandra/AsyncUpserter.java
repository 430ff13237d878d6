package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Asynchronous upserts with at most {@code max_in_flight} requests outstanding.
 *
 * <p>Every statement is idempotent (an upsert by primary key), so a failed one is simply sent
 * again: a transient failure (timeout, unavailable, overloaded, no node reachable while Cassandra
 * restarts) is retried with capped exponential backoff, holding its in-flight permit, so the
 * writer slows down to the retries instead of piling up requests; once a statement has been
 * failing for longer than the retry deadline the whole write fails. A statement Cassandra or the
 * driver refuses for a deterministic reason ({@link Errors#ROW_REJECTED}) is reported through
 * {@link #rejections()} and not retried.
 */
final class AsyncUpserter {
  private static final Logger LOG = LoggerFactory.getLogger(AsyncUpserter.class);
  private static final ScheduledExecutorService RETRIES =
      Executors.newSingleThreadScheduledExecutor(
          task -> {
            Thread thread = new Thread(task, "userstream-cassandra-retry");
            thread.setDaemon(true);
            return thread;
          });
  private static final long LOG_EVERY_NANOS = TimeUnit.SECONDS.toNanos(30);

  /** A statement the writer gave up on for good, with what identifies its source record. */
  record Rejection(long tag, String detail) {}

  private final WriterConfig config;
  private final CqlSession session;
  private final Semaphore permits;
  private final AtomicLong stored = new AtomicLong();
  private final AtomicReference<CassandraWriteException> fatal = new AtomicReference<>();
  private final ConcurrentLinkedQueue<Rejection> rejections = new ConcurrentLinkedQueue<>();
  private final AtomicLong lastWarning = new AtomicLong(System.nanoTime() - LOG_EVERY_NANOS);

  AsyncUpserter(WriterConfig config, CqlSession session) {
    this.config = config;
    this.session = session;
    this.permits = new Semaphore(config.maxInFlight);
  }

  /** Send one statement (blocks while max_in_flight are outstanding). */
  void submit(BoundStatement statement, long tag) {
    failIfFatal();
    try {
      permits.acquire();
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      throw new CassandraWriteException("interrupted while writing to Cassandra", interrupted);
    }
    send(statement.setIdempotent(true), tag, 0, 0L);
  }

  /** A statement that could not even be bound counts as rejected like a refused one. */
  void reject(long tag, Throwable error) {
    rejections.add(new Rejection(tag, Errors.describe(error)));
  }

  /** Wait for every outstanding request; the number of rows stored. */
  long finish() {
    try {
      permits.acquire(config.maxInFlight);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      throw new CassandraWriteException("interrupted while writing to Cassandra", interrupted);
    }
    permits.release(config.maxInFlight);
    failIfFatal();
    return stored.get();
  }

  List<Rejection> rejections() {
    return new ArrayList<>(rejections);
  }

  private void failIfFatal() {
    CassandraWriteException error = fatal.get();
    if (error != null) {
      throw error;
    }
  }

  private void send(BoundStatement statement, long tag, int attempt, long failingSince) {
    if (fatal.get() != null) {
      permits.release();
      return;
    }
    session
        .executeAsync(statement)
        .whenComplete(
            (result, error) -> {
              if (error == null) {
                stored.incrementAndGet();
                permits.release();
                return;
              }
              switch (Errors.classify(error)) {
                case ROW_REJECTED -> {
                  rejections.add(new Rejection(tag, Errors.describe(error)));
                  permits.release();
                }
                case FATAL -> {
                  fatal.compareAndSet(
                      null,
                      new CassandraWriteException(
                          "Cassandra refused the writer at "
                              + config.describe()
                              + ": "
                              + Errors.describe(error),
                          error));
                  permits.release();
                }
                case TRANSIENT -> retry(statement, tag, attempt, failingSince, error);
              }
            });
  }

  private void retry(
      BoundStatement statement, long tag, int attempt, long failingSince, Throwable error) {
    long now = System.nanoTime();
    long since = failingSince == 0L ? now : failingSince;
    long failingMillis = (now - since) / 1_000_000;
    if (failingMillis >= config.retryDeadlineMillis) {
      fatal.compareAndSet(
          null,
          new CassandraWriteException(
              "Cassandra at "
                  + config.describe()
                  + " did not accept a write for "
                  + failingMillis / 1000
                  + " s, past the retry deadline of "
                  + config.retryDeadlineMillis / 1000
                  + " s (USERSTREAM_CASSANDRA_RETRY_DEADLINE_SECONDS): "
                  + Errors.describe(error),
              error));
      permits.release();
      return;
    }
    long delay = Retry.backoffMillis(config, attempt);
    long last = lastWarning.get();
    if (now - last >= LOG_EVERY_NANOS && lastWarning.compareAndSet(last, now)) {
      LOG.warn(
          "Cassandra write failed ({}); retrying with backoff for up to {} s",
          Errors.describe(error),
          Math.max(0, config.retryDeadlineMillis - failingMillis) / 1000);
    }
    RETRIES.schedule(
        () -> send(statement, tag, attempt + 1, since), delay, TimeUnit.MILLISECONDS);
  }
}
