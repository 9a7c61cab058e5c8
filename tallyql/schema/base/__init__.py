"""What every domain module of the schema builds on: the request context (and its one choke
point for permission and scope, `Context.asker`), errors and the one `UserError`, pages and
cursors, scalars, data loaders, shared inputs and enums, the CRUD shape of the managed
resources, request limits and the execution hooks."""
