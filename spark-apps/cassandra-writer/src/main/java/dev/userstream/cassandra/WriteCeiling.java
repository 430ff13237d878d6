package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BoundStatementBuilder;
import com.datastax.oss.driver.api.core.cql.ColumnDefinitions;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.cql.ResultSet;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The benchmark's raw write ceiling: the Java driver alone, asynchronous upserts with bounded
 * in-flight requests (the stream's own {@link AsyncUpserter}), of rows read beforehand from a
 * table into a copy of it. No Spark, no Python: what Cassandra on this machine accepts.
 *
 * <p>Usage: {@code java -cp <jar>:<slf4j-api> dev.userstream.cassandra.WriteCeiling key=value...}
 * with the keys of {@link WriterConfig} plus {@code source} (the table read), {@code warmup} (untimed
 * passes over the rows first, default 1: JIT and connections warm) and {@code repeat} (timed passes,
 * default 1). Prints one JSON object.
 */
public final class WriteCeiling {
  private WriteCeiling() {}

  public static void main(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (String arg : args) {
      int eq = arg.indexOf('=');
      if (eq < 0) {
        throw new IllegalArgumentException("expected key=value, got " + arg);
      }
      options.put(arg.substring(0, eq), arg.substring(eq + 1));
    }
    String source = options.remove("source");
    int repeat = Integer.parseInt(options.getOrDefault("repeat", "1"));
    int warmup = Integer.parseInt(options.getOrDefault("warmup", "1"));
    WriterConfig config = WriterConfig.fromMap(options);
    try (CqlSession session = Sessions.connect(config)) {
      ResultSet rows =
          session.execute(
              SimpleStatement.newInstance("SELECT * FROM " + config.keyspace + "." + source)
                  .setPageSize(5000));
      ColumnDefinitions definitions = rows.getColumnDefinitions();
      List<String> columns = new ArrayList<>();
      definitions.forEach(column -> columns.add(column.getName().asCql(true)));
      List<ByteBuffer[]> values = new ArrayList<>();
      rows.forEach(
          row -> {
            ByteBuffer[] copy = new ByteBuffer[columns.size()];
            for (int i = 0; i < copy.length; i++) {
              copy[i] = row.getBytesUnsafe(i);
            }
            values.add(copy);
          });
      PreparedStatement insert = session.prepare(Sessions.insertCql(config, columns));
      for (int round = 0; round < warmup; round++) {
        pass(new AsyncUpserter(config, session), insert, values);
      }
      long began = System.nanoTime();
      long stored = 0;
      long rejected = 0;
      for (int round = 0; round < repeat; round++) {
        AsyncUpserter upserter = new AsyncUpserter(config, session);
        stored += pass(upserter, insert, values);
        rejected += upserter.rejections().size();
      }
      double seconds = (System.nanoTime() - began) / 1e9;
      System.out.printf(
          "{\"rows\": %d, \"rejected\": %d, \"seconds\": %.3f, \"rows_per_s\": %.1f, \"max_in_flight\": %d}%n",
          stored,
          rejected,
          seconds,
          stored / seconds,
          config.maxInFlight);
    }
  }

  private static long pass(AsyncUpserter upserter, PreparedStatement insert, List<ByteBuffer[]> values) {
    for (ByteBuffer[] row : values) {
      BoundStatementBuilder builder = insert.boundStatementBuilder();
      for (int i = 0; i < row.length; i++) {
        builder = builder.setBytesUnsafe(i, row[i] == null ? null : row[i].duplicate());
      }
      upserter.submit(builder.build(), 0);
    }
    return upserter.finish();
  }
}
