"""Print a development JWT signed with JWT_SECRET:  uv run calls-dev-token --org acme"""

from __future__ import annotations

import argparse
import os

from .auth import issue_token
from .config import DEV_JWT_SECRET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--org", default="org_demo", help="organization id (org_id claim)")
    parser.add_argument("--sub", default="developer", help="subject (sub claim)")
    parser.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    args = parser.parse_args()
    secret = os.environ.get("JWT_SECRET", DEV_JWT_SECRET)
    print(issue_token(secret, organization_id=args.org, subject=args.sub, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
