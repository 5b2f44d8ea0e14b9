"""A whole simulated site on one machine (``ehc-edge demo``): the central service and one box."""
