"""Shared foundations of the box and the central service: configuration base, private files and keys,
strict CBOR, logging, systemd notify and signals. Imports nothing else of the project."""
