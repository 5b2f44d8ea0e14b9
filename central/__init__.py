"""The central service: broker setup, ingest, store, dashboard, enrollment server, CA and CRL, its CLI."""
