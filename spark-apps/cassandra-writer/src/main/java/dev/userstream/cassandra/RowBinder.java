package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.cql.BoundStatementBuilder;
import com.datastax.oss.driver.api.core.cql.ColumnDefinition;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.type.DataType;
import com.datastax.oss.driver.api.core.type.DataTypes;
import java.time.Instant;
import java.util.UUID;
import org.apache.spark.sql.Row;

/**
 * Binds a Spark row's table columns to the prepared upsert with the driver's typed setters (no
 * codec lookup per value). The frame's columns already have the contract's types; uuids arrive as
 * their text and timestamps as Spark timestamps or epoch milliseconds. A value that does not fit
 * its column throws (IllegalArgumentException, ClassCastException, ArithmeticException): the row
 * is rejected for a deterministic reason.
 */
final class RowBinder {
  private enum Kind {
    UUID,
    TEXT,
    INT,
    BIGINT,
    DOUBLE,
    TIMESTAMP,
    OTHER
  }

  private final PreparedStatement prepared;
  private final Kind[] kinds;
  private final int first;

  /** {@code first}: the index in the row of the first table column (they follow in order). */
  RowBinder(PreparedStatement prepared, int first) {
    this.prepared = prepared;
    this.first = first;
    this.kinds = new Kind[prepared.getVariableDefinitions().size()];
    int i = 0;
    for (ColumnDefinition column : prepared.getVariableDefinitions()) {
      kinds[i++] = kindOf(column.getType());
    }
  }

  private static Kind kindOf(DataType type) {
    if (type.equals(DataTypes.UUID)) {
      return Kind.UUID;
    } else if (type.equals(DataTypes.TEXT)) {
      return Kind.TEXT;
    } else if (type.equals(DataTypes.INT)) {
      return Kind.INT;
    } else if (type.equals(DataTypes.BIGINT)) {
      return Kind.BIGINT;
    } else if (type.equals(DataTypes.DOUBLE)) {
      return Kind.DOUBLE;
    } else if (type.equals(DataTypes.TIMESTAMP)) {
      return Kind.TIMESTAMP;
    }
    return Kind.OTHER;
  }

  @SuppressWarnings("unchecked")
  BoundStatementBuilder bind(Row row) {
    BoundStatementBuilder builder = prepared.boundStatementBuilder();
    for (int i = 0; i < kinds.length; i++) {
      Object value = row.get(first + i);
      if (value == null) {
        builder = builder.setToNull(i);
        continue;
      }
      builder =
          switch (kinds[i]) {
            case UUID -> builder.setUuid(
                i, value instanceof UUID uuid ? uuid : UUID.fromString((String) value));
            case TEXT -> builder.setString(i, (String) value);
            case INT -> builder.setInt(i, Math.toIntExact(((Number) value).longValue()));
            case BIGINT -> builder.setLong(i, ((Number) value).longValue());
            case DOUBLE -> builder.setDouble(i, ((Number) value).doubleValue());
            case TIMESTAMP -> builder.setInstant(i, instant(value));
            case OTHER -> builder.set(i, value, (Class<Object>) value.getClass());
          };
    }
    return builder;
  }

  private static Instant instant(Object value) {
    if (value instanceof Instant instant) {
      return instant;
    } else if (value instanceof java.sql.Timestamp timestamp) {
      return timestamp.toInstant();
    }
    return Instant.ofEpochMilli(((Number) value).longValue());
  }
}
