"""The box as an appliance: what a technician runs on it (``ehc-edge status``, ``ehc-edge retention``) and what
the central service may ask of it remotely (diagnostics, a test ticket)."""
