"""Apply every service's migrations (what `make up` runs; Kubernetes runs the same per image).

The list of services lives in the operator CLI (`callsctl migrate` does the same)."""

from callsctl.migrate import migrate_all

migrate_all()
