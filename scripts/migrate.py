"""Apply every service's migrations (what `make up` runs; Kubernetes runs the same per image)."""

import subprocess
import sys

for module in ("gateway", "dialer", "call_log", "recordings"):
    subprocess.run([sys.executable, "-m", module, "migrate"], check=True)
