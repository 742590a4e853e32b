"""Create the database named in a PostgreSQL URL if it does not exist yet."""

import sys

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

url = sys.argv[1]
name = conninfo_to_dict(url)["dbname"]
with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        print(f"created database {name}")
