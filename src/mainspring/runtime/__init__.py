"""Process runtime behind ``mainspring up``: the embedded Redis and the child supervisor."""

from mainspring.runtime.backoff import RestartBackoff
from mainspring.runtime.embedded_redis import EmbeddedRedis
from mainspring.runtime.state import remove_embedded_state, write_embedded_state
from mainspring.runtime.supervisor import ChildSpec, Supervisor

__all__ = [
    "ChildSpec",
    "EmbeddedRedis",
    "RestartBackoff",
    "Supervisor",
    "remove_embedded_state",
    "write_embedded_state",
]
