"""The ``fer-edge`` command line: thin subcommands over the train/convert/edge libraries."""
