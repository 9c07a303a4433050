"""One module per `tfy-audit` command: each turns the parsed arguments into a library call, and
the result into its lines and its `--json` fields."""
