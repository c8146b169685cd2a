"""The `studio` subcommands, one module per group; each has `register(commands)`."""
