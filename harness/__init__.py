"""The core harness: pool I/O, the plugin contract, the stage store, the stages and the CLI."""
