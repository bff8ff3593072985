"""The off-host copy in an S3-compatible bucket: what is uploaded and dropped (pure), and
the copy against a real S3 server in-process (moto's, on loopback): upload, listing from
both places, restore after the backup directory is lost, retention and purge in the
bucket, an unreachable bucket, and credentials that never show."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from structlog.testing import capture_logs

import controller.backups.offsite as offsite_module
from common.restore_points import stamp_of
from common.settings import SettingsError
from controller.backups.bucket import Bucket, BucketConfig, BucketError
from controller.backups.offsite import OffsiteCopy, pause, pending, split_key, thinned
from controller.backups.points import list_points
from tests.support import ADMIN_TOKEN, free_port, make_settings, wait_for
from tests.unit.controller.apps import Api, ApiFactory, events_of
from tests.unit.controller.backups.test_api import ALICE, BOB, alices_bot
from tests.unit.controller.backups.test_points import DB, T0, snapshot
from tests.unit.controller.backups.test_provenance import FUTURE, bobs_pool
from tests.unit.controller.backups.test_provenance import plant as plant_point

KEY_ID = "AKIAFTPOOLTESTKEYID01"
SECRET = "ftpool-test-secret-never-shown-0123456789"
DAY = 86400.0


# -- deciding -----------------------------------------------------------------------------


def test_pending_is_what_the_bucket_lacks_or_holds_older_newest_first() -> None:
    local = {"pools/p/b/files/config.json": 30.0, "a": 10.0, "b": 20.0, "c": 5.0}
    remote = {"a": 11.0, "b": 15.0, "pools/p/b/files/config.json": 20.0}
    assert pending(local, remote) == ["pools/p/b/files/config.json", "b", "c"]


def test_the_pause_grows_while_the_bucket_fails_and_is_bounded() -> None:
    assert [pause(n, 5.0) for n in (0, 1, 2)] == [5.0, 10.0, 20.0]
    assert pause(40, 5.0) == 300.0 and pause(3, 600.0) == 600.0


def test_only_restore_points_keys_are_points() -> None:
    stamp = stamp_of(T0)
    assert split_key(f"pools/p1/b1/{DB}/{stamp}.sqlite") == ("p1", "b1", DB, stamp)
    for key in (f"pools/p1/b1/files/{stamp}.sqlite", f"pools/p1/../{DB}/{stamp}.sqlite",
                f"pools/p1/b1/{DB}/x.sqlite", "pools/p1/b1/files/config.json"):  # fmt: skip
        assert split_key(key) is None


def test_the_bucket_thins_as_the_agents_do_per_pool_bot_and_database() -> None:
    old = [f"pools/p1/b1/{DB}/{stamp_of(T0 + i)}.sqlite" for i in range(14)]
    other = [f"pools/p2/b1/{DB}/{stamp_of(T0 + i)}.sqlite" for i in range(3)]
    now = T0 + 100 * DAY  # past the retention: only the newest 12 stay
    assert thinned([*old, *other, "pools/p1/b1/files/config.json"], now, 30) == old[:2]


# -- against a real S3 server -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_url: str) -> str:
    name = f"ftpool-{uuid.uuid4().hex[:12]}"
    _client(s3_url).create_bucket(Bucket=name)
    return name


def _client(url: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)  # fmt: skip


def _keys(url: str, bucket: str) -> list[str]:
    page = _client(url).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in page.get("Contents", []))


def _env(url: str, bucket: str) -> dict[str, str]:
    # The controller's own loop waits an hour: the tests run each round themselves.
    return {"BACKUP_INTERVAL": "3600000", "BACKUP_S3_URL": url, "BACKUP_S3_BUCKET": bucket,
            "BACKUP_S3_PREFIX": "fleet/a", "BACKUP_S3_ACCESS_KEY_ID": KEY_ID,
            "BACKUP_S3_SECRET_ACCESS_KEY": SECRET}  # fmt: skip


def _offsite(api: Api) -> OffsiteCopy:
    assert api.controller.backups.offsite is not None
    return api.controller.backups.offsite


async def test_uploads_list_and_restore_after_the_backup_directory_is_lost(
    make_api: ApiFactory, s3_url: str, bucket: str
) -> None:
    api = await make_api(**_env(s3_url, bucket))
    agent, point = await alices_bot(api)
    root = api.controller.settings.bot_base_dir / "backups"
    files = root / "pools" / "pool-1" / "b1" / "files"
    files.mkdir(parents=True)
    (files / "config.json").write_text('{"stake_currency": "USDT"}')
    assert await _offsite(api).sync() == 2
    db, stamp = point.split("@")
    assert _keys(s3_url, bucket) == [
        "fleet/a/pools/pool-1/b1/files/config.json", f"fleet/a/pools/pool-1/b1/{db}/{stamp}.sqlite"
    ]  # fmt: skip
    assert await _offsite(api).sync() == 0  # nothing new
    await _offsite(api).listing(fresh=True)  # the bucket's times: whole seconds, its clock
    assert await _offsite(api).sync() == 0  # still nothing new
    _, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert [(p["id"], p["stored"], p["trades"]) for p in body["restorePoints"]] == [
        (point, ["local", "bucket"], 4)
    ]

    shutil.rmtree(root)  # the disk is lost
    _, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert [(p["id"], p["stored"], p["trades"]) for p in body["restorePoints"]] == [
        (point, ["bucket"], None)
    ]
    assert (await api.call("GET", "/api/bots/b1/backups", BOB))[0] == 403
    status, body, _ = await api.call("POST", "/api/bots/b1/restore", ALICE,
                                     json={"restorePoint": point})  # fmt: skip
    assert status == 200, body
    assert agent.seen == ["b1 held", f"restore {point}", "b1 running"]
    (restored,) = list_points(root, "b1")  # fetched where the bot's agent reads it
    assert (restored.id, restored.pool_id, restored.trades) == (point, "pool-1", 4)
    assert (restored.path.stat().st_mode & 0o777) == 0o600


async def test_retention_and_purge_apply_to_the_bucket(
    make_api: ApiFactory, s3_url: str, bucket: str
) -> None:
    api = await make_api(**_env(s3_url, bucket))
    await alices_bot(api)
    root = api.controller.settings.bot_base_dir / "backups"
    for i in range(14):  # long ago, all in one hour: the newest 12 stay
        snapshot(root, "pool-1", "b1", T0 + i, 1)
    snapshot(root, "pool-9", "gone", T0, 1)  # a deleted bot's
    await _offsite(api).sync()
    ours = [k for k in _keys(s3_url, bucket) if "/b1/" in k]
    assert len(ours) == 15
    service = api.controller.backups
    service.clock = lambda: T0 + 100 * 60  # "gone" within the retention; b1's hour is past
    await service.sweep()
    assert len([k for k in _keys(s3_url, bucket) if "/b1/" in k]) == 12
    assert any("/gone/" in k for k in _keys(s3_url, bucket))
    service.purge("gone")
    assert "gone" in await service.sweep()
    assert not any("/gone/" in k for k in _keys(s3_url, bucket))
    assert not (root / "pools" / "pool-9").exists()


async def test_an_unreachable_bucket_is_an_event_and_a_metric_and_shows_no_secret(
    make_api: ApiFactory,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    api = await make_api(**_env(down, "ftpool-nowhere"))
    await alices_bot(api)
    with capture_logs() as logs:
        assert await _offsite(api).sync() == 0
        assert await _offsite(api).sync() == 0  # still failing: no second event
        # The listing falls back to the local points: the restore still works.
        status, answer, _ = await api.call("POST", "/api/bots/b1/restore", ALICE,
                                           json={"time": "2100-01-01T00:00:00Z"})  # fmt: skip
    assert status == 200 and _offsite(api).failures == 1
    (event,) = await events_of(api, "backup_offsite_failed", 1)
    assert "127.0.0.1" in event.reason
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_backup_offsite_failing 1.0" in metrics
    assert "ftpool_backup_offsite_failures_total 1.0" in metrics
    _, events, _ = await api.call("GET", "/api/events", ADMIN_TOKEN)
    shown = f"{logs} {events} {answer} {metrics} {_offsite(api).bucket.config!r}"
    assert KEY_ID not in shown and SECRET not in shown


async def test_a_bucket_back_again_is_recovered(make_api: ApiFactory, s3_url: str) -> None:
    api = await make_api(**_env(s3_url, f"ftpool-{uuid.uuid4().hex[:12]}"))  # not made yet
    await alices_bot(api)
    offsite = _offsite(api)
    assert await offsite.sync() == 0
    (event,) = await events_of(api, "backup_offsite_failed", 1)
    assert "NoSuchBucket" in event.reason
    _client(s3_url).create_bucket(Bucket=offsite.bucket.config.bucket)
    assert await offsite.sync() == 1
    await events_of(api, "backup_offsite_recovered", 1)
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_backup_offsite_failing 0.0" in metrics
    assert "ftpool_backup_offsite_uploads_total 1.0" in metrics
    assert "ftpool_backup_offsite_age_seconds" in metrics


# -- settings -----------------------------------------------------------------------------


def test_off_unless_a_bucket_is_named_and_backups_are_on(tmp_path: Path) -> None:
    assert BucketConfig.from_settings(make_settings(tmp_path)) is None
    off = make_settings(tmp_path, BACKUP_S3_BUCKET="b-1", BACKUP_DIR="off")
    assert BucketConfig.from_settings(off) is None


def test_credentials_from_a_file_and_settings_errors_without_secrets(tmp_path: Path) -> None:
    creds = tmp_path / "s3-credentials"
    creds.write_text(f"{KEY_ID}\n{SECRET}\n")
    config = BucketConfig.from_settings(make_settings(
        tmp_path, BACKUP_S3_BUCKET="b-1", BACKUP_S3_CREDENTIALS_FILE=str(creds),
        BACKUP_S3_PREFIX="/x/y/",
    ))  # fmt: skip
    assert config is not None
    assert (config.access_key_id, config.secret_access_key, config.prefix) == (
        KEY_ID,
        SECRET,
        "x/y/",
    )
    assert SECRET not in repr(config) and KEY_ID not in repr(config)
    half = make_settings(tmp_path, BACKUP_S3_BUCKET="b-1", BACKUP_S3_SECRET_ACCESS_KEY=SECRET)
    with pytest.raises(SettingsError) as caught:
        BucketConfig.from_settings(half)
    assert SECRET not in str(caught.value)
    for bad in ({"BACKUP_S3_BUCKET": "No_Such"}, {"BACKUP_S3_PREFIX": "a/../b"},
                {"BACKUP_S3_URL": f"http://{KEY_ID}:{SECRET}@host"}):  # fmt: skip
        with pytest.raises(SettingsError) as caught:
            make_settings(tmp_path, **bad)
        assert SECRET not in str(caught.value) and KEY_ID not in str(caught.value)


async def test_an_object_removed_behind_its_back_is_uploaded_after_the_sweep(
    make_api: ApiFactory, s3_url: str, bucket: str
) -> None:
    api = await make_api(**_env(s3_url, bucket))
    await alices_bot(api)
    offsite = _offsite(api)
    assert await offsite.sync() == 1
    (key,) = _keys(s3_url, bucket)
    _client(s3_url).delete_object(Bucket=bucket, Key=key)
    assert await offsite.sync() == 0  # as last listed, it is there
    await api.controller.backups.sweep()  # lists the bucket afresh
    assert await offsite.sync() == 1
    assert _keys(s3_url, bucket) == [key]


def test_downloads_of_one_point_at_once_each_write_their_own_file(
    s3_url: str, bucket: str, tmp_path: Path
) -> None:
    """Two restores of one point at once (a double click, a retry): neither truncates the
    other's download, the point arrives whole, and a body of another size is refused."""
    body = bytes(range(256)) * 8192  # 2 MiB: several chunks
    _client(s3_url).put_object(Bucket=bucket, Key="k.sqlite", Body=body)
    store = Bucket(BucketConfig(bucket, s3_url, access_key_id=KEY_ID, secret_access_key=SECRET))
    target = tmp_path / "p.sqlite"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: store.download("k.sqlite", target, len(body)), range(4)))
    assert target.read_bytes() == body
    assert (target.stat().st_mode & 0o777) == 0o600
    with pytest.raises(BucketError):
        store.download("k.sqlite", tmp_path / "short.sqlite", len(body) + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sqlite"]  # no partial file left


async def test_a_purge_the_bucket_refused_is_done_at_a_later_sweep(
    make_api: ApiFactory, s3_url: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purged bot's objects (its config copy holds its exchange keys) go from the bucket
    even when the bucket failed at the sweep that removed the local copies."""
    api = await make_api(**_env(s3_url, bucket))
    await alices_bot(api)
    root = api.controller.settings.bot_base_dir / "backups"
    snapshot(root, "pool-9", "gone", T0, 1)
    await _offsite(api).sync()
    service, store = api.controller.backups, _offsite(api).bucket
    delete = store.delete

    def failing(keys: list[str]) -> None:
        raise BucketError("the bucket is down")

    monkeypatch.setattr(store, "delete", failing)
    service.purge("gone")
    await service.sweep()
    assert not (root / "pools" / "pool-9").exists()
    assert any("/gone/" in k for k in _keys(s3_url, bucket))
    monkeypatch.setattr(store, "delete", delete)
    await service.sweep()  # (or the service's own loop, which the purge woke)
    await wait_for(lambda: not any("/gone/" in k for k in _keys(s3_url, bucket)))
    assert not service.purged_in_bucket


async def test_a_link_planted_in_the_target_is_never_uploaded(
    make_api: ApiFactory, s3_url: str, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A pool's root writes its part of the backup target: a file made a link to a host
    file between the scan and the upload is skipped, and the round goes on."""
    api = await make_api(**_env(s3_url, bucket))
    await alices_bot(api)
    root = api.controller.settings.bot_base_dir / "backups"
    files = root / "pools" / "pool-1" / "b1" / "files"
    files.mkdir(parents=True)
    (files / "config.json").write_text("{}")
    (files / "strategy.py").write_text("# the bot's")
    host_file = tmp_path / "host-secret"
    host_file.write_text("host only")
    offsite = _offsite(api)
    scan = offsite_module.scan_local

    def swapping(path: Path) -> dict[str, float]:
        found = scan(path)  # the link comes after the scan, before the upload
        (files / "config.json").unlink()
        (files / "config.json").symlink_to(host_file)
        return found

    monkeypatch.setattr(offsite_module, "scan_local", swapping)
    assert await offsite.sync() >= 1
    keys = _keys(s3_url, bucket)
    assert "fleet/a/pools/pool-1/b1/files/strategy.py" in keys
    assert "fleet/a/pools/pool-1/b1/files/config.json" not in keys
    assert not offsite.error


async def test_callers_at_once_share_one_bucket_listing(
    make_api: ApiFactory, s3_url: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every GET /backups during a sweep's listing used to start a listing of its own (a
    whole bucket, page by page, in the controller's threads): they share one now."""
    api = await make_api(**_env(s3_url, bucket))
    offsite = _offsite(api)
    store = offsite.bucket
    calls = []
    listed = store.list

    def counted(*args: Any) -> Any:
        calls.append(1)
        return listed(*args)

    monkeypatch.setattr(store, "list", counted)
    callers = [offsite.listing(fresh=True), *(offsite.listing() for _ in range(5))]
    results = await asyncio.gather(*callers, offsite.listing(fresh=True))
    assert len(calls) == 1 and all(r == results[0] for r in results)
    await offsite.listing(fresh=True)  # a later one lists again
    assert len(calls) == 2


async def test_a_point_another_pool_planted_is_not_listed_from_the_bucket_either(
    make_api: ApiFactory, s3_url: str, bucket: str
) -> None:
    api = await make_api(POOL_TENANCY="per-user", **_env(s3_url, bucket))
    _agent, own = await alices_bot(api)
    pool = await bobs_pool(api)
    root = api.controller.settings.bot_base_dir / "backups"
    plant_point(root, pool, "b1", FUTURE)
    assert await _offsite(api).sync() == 2  # both: the bucket copies what is there
    shutil.rmtree(root)  # the disk is lost: what is left is the bucket's
    status, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert status == 200 and [(p["id"], p["stored"]) for p in body["restorePoints"]] == [
        (own, ["bucket"])
    ]
