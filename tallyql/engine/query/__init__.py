"""The query machine: how any analytics question is answered, whatever it is about.

  registry     the semantic layer: every metric and dimension, declared as data
  scope        which workspaces a question reads
  timerange    windows in an IANA zone; periods: calendar day, week, month
  buckets      the time buckets of a window, and the SQL that places a time in one
  filters      event filters and their SQL conditions; filter_codec: their JSON form
  planner      where each measure group is answered: a rollup's pieces, or raw events
  compiler     one SELECT per plan
  executor     `run_query`: plan, compile, fetch, merge, finish
  cost         what a question costs, from its plans; cost_meter: paying for it
  cursors      opaque Relay cursors
  exact_stats  exact counts, sums and quantiles over selected rows

The domain questions (analytics, sessions, agents, the request log, ...) live one level up,
in `tallyql.engine`, and build on these modules; nothing here imports them.
"""
