"""Where messages go: the publisher interface, MQTT (URLs, settings, TLS, client, network), the on-disk outbox, retained state, subscription."""
