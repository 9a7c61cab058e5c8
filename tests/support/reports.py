"""GraphQL documents the report tests share (tests/test_reports.py, tests/test_read_replicas.py)."""

CREATE = """mutation($i: ReportInput!) { createReport(input: $i) {
  report { id nextRunAt sections { kind dimension top } formats }
  userErrors { field message } } }"""
RUNS = """query($id: ID!) { report(id: $id) { nextRunAt runs(first: 20) { totalCount nodes {
  id dueAt manual status rangeStart rangeEnd error sizeBytes delivery
  files { format filename url } } } } }"""
