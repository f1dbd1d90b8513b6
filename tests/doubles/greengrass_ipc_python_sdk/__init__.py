"""TEST DOUBLE of the Greengrass (v1) core runtime's ``greengrass_ipc_python_sdk`` package."""
