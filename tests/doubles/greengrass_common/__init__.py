"""TEST DOUBLE of the Greengrass (v1) core runtime's ``greengrass_common`` package, which only
exists inside a Greengrass core; ``greengrasssdk`` imports it to publish."""
