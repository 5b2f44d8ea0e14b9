"""``[retention]`` in edge.toml: how long delivered and finished data may stay on the box
(:mod:`edge.appliance.retention` applies it)."""

from __future__ import annotations

from pydantic import Field

from foundation.configbase import StrictModel

DEFAULT_MAX_AGE = 24 * 3600.0


class RetentionSection(StrictModel):
    """``[retention]`` in edge.toml: how long delivered and finished data may stay on the box."""

    max_age: float = Field(DEFAULT_MAX_AGE, gt=0, le=90 * 86400.0,
                           description="Seconds after which printed tickets, finished tubes (also at least the "
                                       "rebind window) and stale files are deleted")
