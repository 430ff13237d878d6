package dev.userstream.cassandra;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * What an executor needs to write (plain values: serialized into every task). Built from the
 * string map the Python side hands over (keys as in {@link #fromMap}); the Python settings
 * validate every value at start-up, so a bad one here is a programming error.
 */
public final class WriterConfig implements Serializable {
  private static final long serialVersionUID = 1L;

  final List<String> contactPoints;
  final int port;
  final String localDc;
  final String keyspace;
  final String table;
  final String username;
  final String password;
  final String consistency;
  final int maxInFlight;
  final long requestTimeoutMillis;
  final long retryDeadlineMillis;
  final long backoffInitialMillis;
  final long backoffMaxMillis;
  /** Columns bound to the micro-batch's processing time (null in the frame), and that time. */
  final Set<String> processingTimeColumns;
  final long processingTimeMillis;

  WriterConfig(Map<String, String> options) {
    contactPoints = new ArrayList<>();
    for (String host : required(options, "contact_points").split(",")) {
      if (!host.isBlank()) {
        contactPoints.add(host.trim());
      }
    }
    port = Integer.parseInt(required(options, "port"));
    localDc = required(options, "local_dc");
    keyspace = required(options, "keyspace");
    table = required(options, "table");
    username = emptyToNull(options.get("username"));
    password = emptyToNull(options.get("password"));
    consistency = options.getOrDefault("consistency", "LOCAL_QUORUM");
    maxInFlight = Integer.parseInt(options.getOrDefault("max_in_flight", "256"));
    requestTimeoutMillis = Long.parseLong(options.getOrDefault("request_timeout_ms", "10000"));
    retryDeadlineMillis = Long.parseLong(options.getOrDefault("retry_deadline_ms", "600000"));
    backoffInitialMillis = Long.parseLong(options.getOrDefault("backoff_initial_ms", "200"));
    backoffMaxMillis = Long.parseLong(options.getOrDefault("backoff_max_ms", "10000"));
    processingTimeColumns = new HashSet<>();
    for (String column : options.getOrDefault("processing_time_columns", "").split(",")) {
      if (!column.isBlank()) {
        processingTimeColumns.add(column.trim());
      }
    }
    processingTimeMillis =
        Long.parseLong(
            options.getOrDefault(
                "processing_time_ms", Long.toString(System.currentTimeMillis())));
    if (maxInFlight < 1 || retryDeadlineMillis < 0 || backoffInitialMillis < 1) {
      throw new IllegalArgumentException("invalid writer options " + redacted(options));
    }
  }

  public static WriterConfig fromMap(Map<String, String> options) {
    return new WriterConfig(options);
  }

  /** The key of the executor's session cache: everything but the retry timing. */
  String sessionKey() {
    return String.join(
        "|",
        String.join(",", contactPoints),
        Integer.toString(port),
        localDc,
        Objects.toString(username, ""),
        Integer.toHexString(Objects.hashCode(password)),
        consistency,
        Long.toString(requestTimeoutMillis));
  }

  String describe() {
    return String.join(",", contactPoints) + ":" + port + " (" + keyspace + "." + table + ")";
  }

  private static String required(Map<String, String> options, String key) {
    String value = options.get(key);
    if (value == null || value.isBlank()) {
      throw new IllegalArgumentException("writer option " + key + " is missing");
    }
    return value;
  }

  private static String emptyToNull(String value) {
    return value == null || value.isEmpty() ? null : value;
  }

  private static String redacted(Map<String, String> options) {
    StringBuilder text = new StringBuilder("{");
    options.forEach(
        (key, value) ->
            text.append(key).append('=').append(key.equals("password") ? "***" : value).append(' '));
    return text.append('}').toString();
  }
}
