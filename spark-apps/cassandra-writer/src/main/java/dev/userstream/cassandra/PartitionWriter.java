package dev.userstream.cassandra;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import java.time.Instant;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;

/**
 * The task of one partition of a micro-batch: count every record by reason, upsert the valid ones
 * asynchronously, and report the records that were not stored (rejected by validation, or by the
 * sink for a deterministic reason) by their Kafka partition and offset.
 *
 * <p>The rows have the layout of {@link CassandraSink#write}: Kafka partition, Kafka offset,
 * rejection reason (null when valid) and its detail, then the table's columns.
 */
final class PartitionWriter implements FlatMapFunction<Iterator<InternalRow>, PartitionResult> {
  private static final long serialVersionUID = 1L;
  static final int PARTITION = 0;
  static final int OFFSET = 1;
  static final int REASON = 2;
  static final int DETAIL = 3;
  static final int FIRST_COLUMN = 4;

  private final WriterConfig config;
  private final List<String> columns;
  private final DataType[] sparkTypes;
  private final String sinkRejected;

  PartitionWriter(
      WriterConfig config, List<String> columns, DataType[] sparkTypes, String sinkRejected) {
    this.config = config;
    this.columns = columns;
    this.sparkTypes = sparkTypes;
    this.sinkRejected = sinkRejected;
  }

  @Override
  public Iterator<PartitionResult> call(Iterator<InternalRow> rows) {
    PartitionResult result = new PartitionResult();
    if (!rows.hasNext()) {
      return Collections.singletonList(result).iterator();
    }
    CqlSession session = Sessions.session(config);
    PreparedStatement insert = Sessions.insert(config, columns);
    RowBinder binder =
        new RowBinder(
            insert,
            FIRST_COLUMN,
            sparkTypes,
            config.processingTimeColumns,
            Instant.ofEpochMilli(config.processingTimeMillis));
    AsyncUpserter upserter = new AsyncUpserter(config, session);
    // the Kafka source of every valid row sent, by tag (its index here)
    int[] partitions = new int[1024];
    long[] offsets = new long[1024];
    int sent = 0;
    while (rows.hasNext()) {
      InternalRow row = rows.next();
      result.rowsIn++;
      int partition = row.getInt(PARTITION);
      long offset = row.getLong(OFFSET);
      String reason = row.isNullAt(REASON) ? null : row.get(REASON, DataTypes.StringType).toString();
      if (reason != null) {
        String detail = row.isNullAt(DETAIL) ? null : row.get(DETAIL, DataTypes.StringType).toString();
        result.add(new PartitionResult.Rejected(partition, offset, reason, detail));
        continue;
      }
      BoundStatement statement;
      try {
        statement = binder.bind(row).build();
      } catch (RuntimeException error) {
        if (Errors.classify(error) != Errors.ROW_REJECTED) {
          throw error;
        }
        result.add(
            new PartitionResult.Rejected(partition, offset, sinkRejected, Errors.describe(error)));
        continue;
      }
      if (sent == partitions.length) {
        partitions = Arrays.copyOf(partitions, sent * 2);
        offsets = Arrays.copyOf(offsets, sent * 2);
      }
      partitions[sent] = partition;
      offsets[sent] = offset;
      upserter.submit(statement, sent);
      sent++;
    }
    result.stored = upserter.finish();
    for (AsyncUpserter.Rejection rejection : upserter.rejections()) {
      int tag = (int) rejection.tag();
      result.add(
          new PartitionResult.Rejected(
              partitions[tag], offsets[tag], sinkRejected, rejection.detail()));
    }
    return Collections.singletonList(result).iterator();
  }
}
