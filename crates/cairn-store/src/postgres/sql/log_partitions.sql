-- The ranges of task numbers whose logs have partitions of their own (V8),
-- in order.
SELECT lo, hi, created_at FROM log_partitions ORDER BY lo
