"""``fer-edge homeassistant remove``: take an agent's entities out of Home Assistant, leaving nothing behind.

Home Assistant removes the entities of a discovery config when the config topic gets an empty
retained message. :func:`remove_discovery` sends one to each of the agent's config topics
(:func:`edge.events.homeassistant.config_topics`) from a bare client
(:func:`edge.delivery.oneshot.publish_retained_once`: clean session, no last will, no status, no
queue file), so that, unlike an agent's publisher used for the purpose, it leaves no retained
message of its own on the broker.
"""

from typing import Any

from edge.delivery.oneshot import publish_retained_once
from edge.events.homeassistant import DEFAULT_DISCOVERY_PREFIX, config_topics


def remove_discovery(
    url: str,
    device_id: str,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    timeout: float = 10.0,
    **client_options: Any,
) -> list[str]:
    """Clear the discovery configs of ``device_id`` under ``discovery_prefix`` on the broker ``url``;
    returns their topics once the broker acknowledged each. ``client_options``: credentials and TLS
    files (``edge.delivery.client.create_client``'s). ConnectionError when the broker cannot be
    reached, refuses, or does not acknowledge within ``timeout`` s."""
    topics = config_topics(device_id, discovery_prefix)
    publish_retained_once(url, [(topic, b"") for topic in topics], timeout=timeout, **client_options)
    return topics
