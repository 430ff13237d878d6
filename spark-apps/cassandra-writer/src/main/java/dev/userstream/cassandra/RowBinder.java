package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.cql.BoundStatementBuilder;
import com.datastax.oss.driver.api.core.cql.ColumnDefinition;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.type.DataTypes;
import java.time.Instant;
import java.util.Set;
import java.util.UUID;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.DataType;

/**
 * Binds a Spark row's table columns to the prepared upsert with the driver's typed setters (no
 * codec lookup per value). Rows are Spark's internal rows (no conversion to external {@code Row}
 * objects: that alone costs a fifth of the task); the frame's columns already have the contract's
 * types, uuids arrive as their text and timestamps as epoch milliseconds. A value that does not fit
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
  private final DataType[] sparkTypes;
  private final boolean[] strings;
  private final boolean[] processingTime;
  private final Instant processedAt;
  private final int first;

  /**
   * {@code first}: the index in the row of the first table column (they follow in order);
   * {@code sparkTypes}: the Spark types of those columns; {@code processingTimeColumns}: the
   * columns bound to {@code processedAt} whatever the row holds (the frame has null there).
   */
  RowBinder(
      PreparedStatement prepared,
      int first,
      DataType[] sparkTypes,
      Set<String> processingTimeColumns,
      Instant processedAt) {
    this.prepared = prepared;
    this.first = first;
    this.sparkTypes = sparkTypes;
    this.processedAt = processedAt;
    this.strings = new boolean[sparkTypes.length];
    for (int i = 0; i < sparkTypes.length; i++) {
      strings[i] = sparkTypes[i] instanceof org.apache.spark.sql.types.StringType;
    }
    int size = prepared.getVariableDefinitions().size();
    this.kinds = new Kind[size];
    this.processingTime = new boolean[size];
    int i = 0;
    for (ColumnDefinition column : prepared.getVariableDefinitions()) {
      processingTime[i] = processingTimeColumns.contains(column.getName().asInternal());
      kinds[i++] = kindOf(column.getType());
    }
  }

  private static Kind kindOf(com.datastax.oss.driver.api.core.type.DataType type) {
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
  BoundStatementBuilder bind(InternalRow row) {
    BoundStatementBuilder builder = prepared.boundStatementBuilder();
    for (int i = 0; i < kinds.length; i++) {
      if (processingTime[i]) {
        builder = builder.setInstant(i, processedAt);
        continue;
      }
      if (row.isNullAt(first + i)) {
        builder = builder.setToNull(i);
        continue;
      }
      Object value = row.get(first + i, sparkTypes[i]);
      if (strings[i]) {
        value = value.toString(); // Spark's UTF8String
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
