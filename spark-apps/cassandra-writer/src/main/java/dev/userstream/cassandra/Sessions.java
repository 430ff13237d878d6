package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.CqlSessionBuilder;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.config.ProgrammaticDriverConfigLoaderBuilder;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One driver session per executor JVM and configuration, reused by every task (a session holds
 * the connection pool and the prepared statements); closed when the JVM exits.
 */
final class Sessions {
  private static final Logger LOG = LoggerFactory.getLogger(Sessions.class);
  private static final Map<String, CqlSession> SESSIONS = new ConcurrentHashMap<>();
  private static final Map<String, PreparedStatement> PREPARED = new ConcurrentHashMap<>();

  static {
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> SESSIONS.values().forEach(CqlSession::closeAsync), "userstream-cassandra-close"));
  }

  private Sessions() {}

  static CqlSession session(WriterConfig config) {
    return SESSIONS.computeIfAbsent(config.sessionKey(), key -> connectUntilDeadline(config));
  }

  /** The upsert of {@code columns} into the configured table, prepared once per session. */
  static PreparedStatement insert(WriterConfig config, List<String> columns) {
    String cql = insertCql(config, columns);
    CqlSession session = session(config);
    return PREPARED.computeIfAbsent(
        config.sessionKey() + "|" + cql,
        key -> Retry.untilDeadline(config, "prepare the insert", () -> session.prepare(cql)));
  }

  /** The upsert of {@code columns} into the configured table, as CQL with one marker per column. */
  static String insertCql(WriterConfig config, List<String> columns) {
    return "INSERT INTO "
        + config.keyspace
        + "."
        + config.table
        + " ("
        + String.join(", ", columns)
        + ") VALUES ("
        + String.join(", ", columns.stream().map(c -> "?").toList())
        + ")";
  }

  static CqlSession connect(WriterConfig config) {
    // Driver options (java-driver-core 4.19 reference.conf): the consistency of every request, a
    // request timeout, and a short cap on the reconnection delay so a restarted node is used again
    // within seconds (the default policy waits up to 60 s between attempts).
    ProgrammaticDriverConfigLoaderBuilder options =
        DriverConfigLoader.programmaticBuilder()
            .withString(DefaultDriverOption.REQUEST_CONSISTENCY, config.consistency)
            .withDuration(
                DefaultDriverOption.REQUEST_TIMEOUT, Duration.ofMillis(config.requestTimeoutMillis))
            .withDuration(DefaultDriverOption.RECONNECTION_BASE_DELAY, Duration.ofMillis(500))
            .withDuration(DefaultDriverOption.RECONNECTION_MAX_DELAY, Duration.ofSeconds(5))
            .withDuration(DefaultDriverOption.CONNECTION_INIT_QUERY_TIMEOUT, Duration.ofSeconds(10))
            .withDuration(DefaultDriverOption.CONTROL_CONNECTION_TIMEOUT, Duration.ofSeconds(10))
            // the writer keeps at most max_in_flight requests in flight itself
            .withInt(DefaultDriverOption.CONNECTION_MAX_REQUESTS, Math.max(1024, config.maxInFlight));
    CqlSessionBuilder builder =
        CqlSession.builder().withConfigLoader(options.build()).withLocalDatacenter(config.localDc);
    for (String host : config.contactPoints) {
      builder = builder.addContactPoint(new InetSocketAddress(host, config.port));
    }
    if (config.username != null) {
      builder = builder.withAuthCredentials(config.username, config.password);
    }
    return builder.build();
  }

  private static CqlSession connectUntilDeadline(WriterConfig config) {
    LOG.info("connecting to Cassandra at {}", config.describe());
    return Retry.untilDeadline(config, "connect to Cassandra", () -> connect(config));
  }
}
