package dev.userstream.cassandra;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The stream's Cassandra sink, called once per micro-batch from the Python {@code foreachBatch}
 * through py4j: the rows never leave the JVM. See {@link PartitionWriter} for one task's work.
 */
public final class CassandraSink {
  /** The schema of {@link BatchResult#rejections}: transforms.SINK_REJECTION_SCHEMA. */
  public static final StructType REJECTION_SCHEMA =
      new StructType(
          new StructField[] {
            DataTypes.createStructField("partition", DataTypes.IntegerType, false),
            DataTypes.createStructField("offset", DataTypes.LongType, false),
            DataTypes.createStructField("reason", DataTypes.StringType, false),
            DataTypes.createStructField("detail", DataTypes.StringType, true)
          });

  private CassandraSink() {}

  /** What a micro-batch wrote. */
  public static final class BatchResult {
    private final long rowsIn;
    private final long stored;
    private final Map<String, Long> reasons;
    private final List<PartitionResult.Rejected> rejected;
    private final SparkSession spark;

    BatchResult(SparkSession spark, List<PartitionResult> parts) {
      this.spark = spark;
      long in = 0;
      long written = 0;
      Map<String, Long> counts = new HashMap<>();
      List<PartitionResult.Rejected> all = new ArrayList<>();
      for (PartitionResult part : parts) {
        in += part.rowsIn;
        written += part.stored;
        part.reasons.forEach((reason, n) -> counts.merge(reason, n, Long::sum));
        all.addAll(part.rejected);
      }
      this.rowsIn = in;
      this.stored = written;
      this.reasons = counts;
      this.rejected = all;
    }

    public long rowsIn() {
      return rowsIn;
    }

    public long stored() {
      return stored;
    }

    public long rejectedCount() {
      return rejected.size();
    }

    /** Rejected records by reason (validation's and {@code sink_rejected}). */
    public Map<String, Long> reasons() {
      return reasons;
    }

    /** Every rejected record: partition, offset, reason and its detail (validation's or the sink's error). */
    public Dataset<Row> rejections() {
      List<Row> rows = new ArrayList<>(rejected.size());
      for (PartitionResult.Rejected record : rejected) {
        rows.add(
            RowFactory.create(
                record.partition(), record.offset(), record.reason(), record.detail()));
      }
      return spark.createDataFrame(rows, REJECTION_SCHEMA);
    }
  }

  /**
   * Upsert the valid rows of {@code frame} and count every record.
   *
   * @param frame columns: Kafka partition (int), Kafka offset (long), rejection reason (string,
   *     null when valid), its detail (string), then the table's columns named as in the table
   * @param options the writer's options (see {@link WriterConfig})
   * @param sinkRejected the reason given to rows the sink refuses for a deterministic reason
   */
  public static BatchResult write(Dataset<Row> frame, Map<String, String> options, String sinkRejected) {
    WriterConfig config = WriterConfig.fromMap(options);
    String[] names = frame.columns();
    if (names.length <= PartitionWriter.FIRST_COLUMN) {
      throw new IllegalArgumentException("the sink frame has no table columns: " + Arrays.toString(names));
    }
    List<String> columns =
        List.of(Arrays.copyOfRange(names, PartitionWriter.FIRST_COLUMN, names.length));
    StructField[] fields = frame.schema().fields();
    DataType[] types = new DataType[columns.size()];
    for (int i = 0; i < types.length; i++) {
      types[i] = fields[PartitionWriter.FIRST_COLUMN + i].dataType();
    }
    // Spark's internal rows, not external Rows: no per-value conversion
    org.apache.spark.sql.classic.Dataset<Row> classic = (org.apache.spark.sql.classic.Dataset<Row>) frame;
    List<PartitionResult> parts =
        classic
            .queryExecution()
            .toRdd()
            .toJavaRDD()
            .mapPartitions(new PartitionWriter(config, columns, types, sinkRejected))
            .collect();
    return new BatchResult(frame.sparkSession(), parts);
  }
}
