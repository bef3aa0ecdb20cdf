"""The scale tests' servers themselves: PostgreSQL and SeaweedFS really run, durably."""

from __future__ import annotations

import psycopg

pytest_plugins = ["scale_fixtures"]


def test_postgres_runs_with_fsync_on_loopback(postgres, pg_url):
    with psycopg.connect(pg_url) as connection:
        fsync, listen = connection.execute(
            "SELECT current_setting('fsync'), current_setting('listen_addresses')"
        ).fetchone()
    assert (fsync, listen) == ("on", "127.0.0.1")
    print(f"postgres started in {postgres.started_in:.2f} s")


def test_seaweed_serves_s3(seaweed, s3_url):
    bucket = s3_url.removeprefix("s3://").split("?")[0]
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key="a/b", Body=b"payload")
    assert client.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"payload"
    print(f"seaweed started in {seaweed.started_in:.2f} s")
