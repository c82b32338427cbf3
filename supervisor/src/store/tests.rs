//! The store's tests against a real SQLite file and a real PostgreSQL.
