"""The write path of events: the record ingest hands over (`record`), the writer that
group-commits it (`writer`), one batch's transaction on either database (`batch`), and the
daily partitions of PostgreSQL's events and payloads (`partitions`)."""
