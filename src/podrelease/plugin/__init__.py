"""The doit glue: the task loader, doit commands, the reporter and the state file."""
