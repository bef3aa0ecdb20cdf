"""S3Blobs keeps the Blobs protocol as DirectoryBlobs does, on a real S3 server (SeaweedFS),
and says clearly what is wrong when the endpoint or the bucket is not there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from scale_servers import SeaweedServer, free_port

from hub.s3 import S3Blobs, parse_url
from hub.storage import Blobs, StorageError, chunk_key, open_blobs, packet_key

pytest_plugins = ["scale_fixtures"]


@pytest.fixture(params=["directory", "s3"])
def open_store(request, tmp_path) -> Iterator[Callable[[], Blobs]]:
    """Opens another blob store object on one shared store (a replica's view of it)."""
    if request.param == "directory":
        url = f"file://{tmp_path / 'blobs'}"
    else:
        url = request.getfixturevalue("s3_url")
    opened: list[Blobs] = []

    def opener() -> Blobs:
        opened.append(open_blobs(url, tmp_path))
        return opened[-1]

    yield opener
    for store in opened:
        if hasattr(store, "close"):
            store.close()


@pytest.fixture
def blobs(open_store) -> Blobs:
    return open_store()


def test_both_implement_the_protocol(blobs):
    assert isinstance(blobs, Blobs)


def test_put_get_replace_delete(blobs):
    key = packet_key("ab" * 32)
    blobs.put(key, b"first")
    assert blobs.get(key) == b"first"
    blobs.put(key, b"second, longer")  # replaced whole
    assert blobs.get(key) == b"second, longer"
    blobs.delete(key)
    blobs.delete(key)  # absent: nothing happens
    with pytest.raises(KeyError):
        blobs.get(key)


def test_empty_and_binary_bodies_come_back_exactly(blobs):
    every_byte = bytes(range(256)) * 64
    blobs.put("quarantine/x.rekam", every_byte)
    blobs.put("quarantine/empty.rekam", b"")
    assert blobs.get("quarantine/x.rekam") == every_byte
    assert blobs.get("quarantine/empty.rekam") == b""


def test_keys_by_prefix_sorted(blobs):
    sha = "cd" * 32
    pieces = [chunk_key(sha, start) for start in (70000, 0, 35000)]
    for key in [*pieces, packet_key(sha), "uploads/other/000000000000-a"]:
        blobs.put(key, b"x")
    assert blobs.keys(f"uploads/{sha}/") == sorted(pieces)
    assert blobs.keys("packets/") == [packet_key(sha)]
    assert blobs.keys("quarantine/") == []
    assert len(blobs.keys("")) == 5


def test_keys_that_could_climb_out_are_refused(blobs):
    for bad in ("../x", "a/../../x", "/abs", ".hidden", "a//b", "a b"):
        with pytest.raises(ValueError):
            blobs.put(bad, b"x")
        with pytest.raises(ValueError):
            blobs.get(bad)


def test_what_one_replica_puts_the_other_reads_at_once(open_store):
    a, b = open_store(), open_store()
    for n in range(20):
        a.put(f"packets/{n:064x}.rekam", n.to_bytes(2, "big") * 100)
        assert b.get(f"packets/{n:064x}.rekam") == n.to_bytes(2, "big") * 100
    assert len(b.keys("packets/")) == 20


def test_many_threads_putting_at_once_lose_nothing(blobs):
    def put(n: int) -> None:
        blobs.put(chunk_key("ef" * 32, n * 1000), bytes([n]) * 1000)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(40)))
    keys = blobs.keys(f"uploads/{'ef' * 32}/")
    assert len(keys) == 40
    assert {blobs.get(key)[0] for key in keys} == set(range(40))


# -- S3 only -------------------------------------------------------------------------------


def test_listing_follows_every_page(seaweed: SeaweedServer, s3_url):
    blobs = S3Blobs(s3_url, page_size=7)
    requests = []
    blobs._client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **_: requests.append(1)
    )
    wanted = [f"uploads/{'aa' * 32}/{n:012d}-x" for n in range(23)]
    for key in wanted:
        blobs.put(key, b"x")
    blobs.put("packets/z.rekam", b"x")
    assert blobs.keys("uploads/") == wanted
    assert len(requests) == 4  # 7 + 7 + 7 + 2


def test_the_bucket_is_made_at_start_by_either_replica(seaweed: SeaweedServer, s3_env):
    url = seaweed.url("rekam-made-at-start")
    with pytest.raises(ClientError):  # not there before
        seaweed.client().head_bucket(Bucket="rekam-made-at-start")
    barrier = threading.Barrier(3)

    def start() -> S3Blobs:
        barrier.wait()
        return S3Blobs(url)

    with ThreadPoolExecutor(3) as pool:
        stores = list(pool.map(lambda _: start(), range(3)))
    stores[0].put("packets/a.rekam", b"kept")
    assert stores[2].get("packets/a.rekam") == b"kept"
    made = seaweed.client().head_bucket(Bucket="rekam-made-at-start")
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_prefix_keeps_the_hub_in_one_folder_of_a_shared_bucket(seaweed: SeaweedServer, s3_url):
    bucket = parse_url(s3_url)[0]
    shared = S3Blobs(s3_url.replace(f"s3://{bucket}?", f"s3://{bucket}/district-3201?"))
    shared.put("packets/a.rekam", b"mine")
    seaweed.client().put_object(Bucket=bucket, Key="packets/b.rekam", Body=b"not the hub's")
    assert shared.keys("packets/") == ["packets/a.rekam"]
    raw = seaweed.client().get_object(Bucket=bucket, Key="district-3201/packets/a.rekam")
    assert raw["Body"].read() == b"mine"


def test_an_unreachable_endpoint_is_a_clear_error(s3_env):
    url = f"s3://rekam-packets?endpoint=http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError, match="unreachable") as failed:
        S3Blobs(url, connect_timeout=1)
    assert "rekam-packets" in str(failed.value) and "127.0.0.1" in str(failed.value)


def test_a_bucket_gone_while_running_is_a_clear_error(seaweed: SeaweedServer, s3_url):
    blobs = S3Blobs(s3_url)
    bucket = parse_url(s3_url)[0]
    seaweed.client().delete_bucket(Bucket=bucket)
    with pytest.raises(StorageError, match="does not exist"):
        blobs.put("packets/a.rekam", b"x")
    with pytest.raises(StorageError, match="does not exist"):
        blobs.keys("packets/")


def test_credentials_do_not_go_in_the_url():
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        parse_url("s3://key:secret@rekam-packets?endpoint=http://127.0.0.1:1")


@pytest.mark.parametrize(
    "url",
    [
        "s3://?endpoint=http://127.0.0.1:1",
        "s3://rekam-packets?endpoint=ftp://127.0.0.1",
        "s3://rekam-packets?endpont=http://127.0.0.1:1",
    ],
)
def test_malformed_urls_are_refused(url):
    with pytest.raises(StorageError):
        parse_url(url)


def test_a_body_altered_on_the_way_is_refused_not_stored(seaweed: SeaweedServer, s3_url):
    """boto3 sends a checksum of the body with each put; the store checks it before its 200."""
    blobs = S3Blobs(s3_url)

    def alter(request, **_):
        body = request.body.read() if hasattr(request.body, "read") else request.body
        request.body = bytes(len(body))  # as many bytes, all zero

    blobs._client.meta.events.register("before-send.s3.PutObject", alter)
    with pytest.raises(StorageError, match=r"cannot store packets/a\.rekam \(BadDigest"):
        blobs.put("packets/a.rekam", b"the sealed packet")
    with pytest.raises(KeyError):
        S3Blobs(s3_url).get("packets/a.rekam")
