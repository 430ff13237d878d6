package dev.userstream.cassandra;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** What one task wrote: every record counted by reason, and the rejected records by source. */
public final class PartitionResult implements Serializable {
  private static final long serialVersionUID = 1L;

  /** A rejected record: Kafka partition and offset, reason and its detail. */
  public record Rejected(int partition, long offset, String reason, String detail)
      implements Serializable {}

  long rowsIn;
  long stored;
  final Map<String, Long> reasons = new HashMap<>();
  final List<Rejected> rejected = new ArrayList<>();

  void add(Rejected record) {
    rejected.add(record);
    reasons.merge(record.reason(), 1L, Long::sum);
  }
}
