"""TEST DOUBLE of ``greengrass_common.env_vars``: the variables the Greengrass core sets for its
Lambdas, read at import like the real module (GG_DAEMON_PORT: the core's IPC port)."""

import os

AUTH_TOKEN = os.getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
MY_FUNCTION_ARN = os.getenv("MY_FUNCTION_ARN")
SHADOW_FUNCTION_ARN = os.getenv("SHADOW_FUNCTION_ARN")
ROUTER_FUNCTION_ARN = os.getenv("ROUTER_FUNCTION_ARN")
GG_DAEMON_PORT = os.getenv("GG_DAEMON_PORT", "8000")
