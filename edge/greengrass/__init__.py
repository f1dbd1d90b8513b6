"""The AWS IoT Greengrass V2 component's device side: its install check and its configuration."""
