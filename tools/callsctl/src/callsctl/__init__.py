"""callsctl: the operator's command-line tool for the Calls backend."""
