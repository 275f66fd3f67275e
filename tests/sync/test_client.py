"""The reference sync client against a real server process: enrol, pull, queue (encrypted,
ciphertext only), push, status — through the Python API and the `diiwaan-sync` command."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from server.intake.models import Device, Submission
from sync.client import SyncError
from tests.support.liveserver import BIN
from tests.sync.conftest import FORM_ID, FORM_VERSION, quick_backoff, visit_xml


def on_server(server, statement) -> list:
    """Rows from the live server's own database."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement).all())
    finally:
        engine.dispose()


def submissions_on(server, instance_ids) -> list[tuple]:
    return [
        tuple(row)
        for row in on_server(
            server,
            select(Submission.instance_id, Submission.device_id, Submission.encrypted).where(
                Submission.instance_id.in_(list(instance_ids))
            ),
        )
    ]


def write_visit(folder: Path, name: str = "Faadumo", instance_id: str | None = None) -> Path:
    instance_id = instance_id or f"uuid:{uuid.uuid4()}"
    path = folder / f"{instance_id.removeprefix('uuid:')}.xml"
    path.write_bytes(visit_xml(name, instance_id))
    return path


def test_enrol_pull_queue_push_and_status_round_trip(live, make_client, tmp_path):
    server, token = live
    tablet = make_client()

    device = tablet.enroll(server.url, token, name="tablet 1")
    pulled = tablet.pull()
    item = tablet.queue(write_visit(tmp_path))
    summary = tablet.push()
    status = tablet.status()

    assert device["user"] == "faadumo" and device["districts"] == ["SO-BN-HOD"]
    assert (pulled["forms"], pulled["forms_changed"]) == (1, 1)
    form = tablet.store.form(FORM_ID, FORM_VERSION)
    assert form is not None and form.public_key and form.encryption == "managed"
    assert (summary.listed, summary.acknowledged, summary.remaining) == (1, 1, 0)
    assert summary.outcomes == {"created": 1}
    assert submissions_on(server, [item.instance_id]) == [
        (item.instance_id, tablet.device_id, True)
    ]
    assert [r.instance_id for r in status.acknowledged] == [item.instance_id]
    assert status.acknowledged[0].review_state == "received" and status.checked_online
    assert tablet.pull()["forms_changed"] == 0
    assert tablet.push().listed == 0


def test_only_ciphertext_is_kept_on_the_device(live, make_client, tmp_path):
    server, token = live
    tablet = make_client()
    tablet.enroll(server.url, token)
    tablet.pull()
    marker = "Hodan-Plaintext-7731"
    original = write_visit(tmp_path, name=marker)

    tablet.queue(original, remove_originals=True)

    assert not original.exists()
    stored = b"".join(path.read_bytes() for path in tablet.home.rglob("client.db*"))
    assert marker.encode() not in stored
    assert b"submission.xml.enc" in stored  # the encrypted pack is what waits in the outbox


def test_queueing_for_a_form_that_was_not_pulled_says_to_pull(make_client, tmp_path):
    tablet = make_client()
    with pytest.raises(SyncError, match="diiwaan-sync pull"):
        tablet.queue(write_visit(tmp_path))


def test_queueing_the_same_instance_twice_is_refused(live, make_client, tmp_path):
    server, token = live
    tablet = make_client()
    tablet.enroll(server.url, token)
    tablet.pull()
    path = write_visit(tmp_path)
    tablet.queue(path)
    with pytest.raises(SyncError, match="already queued"):
        tablet.queue(path)
    tablet.push()
    with pytest.raises(SyncError, match="already acknowledged"):
        tablet.queue(path)


def test_an_item_leaves_the_outbox_only_once_the_server_acknowledged_it(
    live, make_client, tmp_path
):
    server, token = live
    tablet = make_client(backoff=quick_backoff(give_up_after=2))
    tablet.enroll(server.url, token)
    tablet.pull()
    queued = [tablet.queue(write_visit(tmp_path)).instance_id for _ in range(3)]
    # The link is down: nothing answers on the server's port.
    tablet.store.put(server_url="http://127.0.0.1:9")
    tablet.disconnect()

    with pytest.raises(SyncError, match="stays queued"):
        tablet.push()

    assert [item.instance_id for item in tablet.store.queued()] == queued
    tablet.store.put(server_url=server.url)
    tablet.disconnect()
    assert tablet.push().acknowledged == 3
    assert tablet.store.queued() == []


def test_a_refused_item_stays_queued_with_the_servers_reason(live, make_client, tmp_path):
    server, token = live
    first, second = make_client("first"), make_client("second")
    for tablet in (first, second):
        tablet.enroll(server.url, token)
        tablet.pull()
    instance_id = f"uuid:{uuid.uuid4()}"
    first.queue(write_visit(tmp_path / "..", "Cawo", instance_id))
    first.push()
    # The same instance with other answers: the server keeps the first (409 conflict).
    second.queue(write_visit(tmp_path, "Sahra", instance_id))

    summary = second.push()

    assert (summary.acknowledged, summary.refused) == (0, 1)
    (refused,) = second.store.refused()
    assert (refused.outcome, refused.status) == ("conflict", 409)
    assert "different content" in (refused.message or "")
    assert second.push().listed == 0  # not sent again by itself ...
    assert second.push(retry_refused=True).refused == 1  # ... only when asked


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "diiwaan-sync"), "--home", str(home), "--timeout", "20", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_client_round_trip(live, tmp_path):
    server, token = live
    home = tmp_path / "cli"

    enrolled = run_cli(home, "enroll", server.url, token, "--name", "tablet 9")
    pulled = run_cli(home, "pull")
    queued = run_cli(home, "queue", str(write_visit(tmp_path)))
    pushed = run_cli(home, "push")
    status = run_cli(home, "status")
    as_json = run_cli(home, "status", "--json")

    assert enrolled.returncode == 0 and "for faadumo" in enrolled.stdout, enrolled.stderr
    assert pulled.returncode == 0 and "1 forms (1 new or changed" in pulled.stdout
    assert queued.returncode == 0 and "queued uuid:" in queued.stdout
    assert pushed.returncode == 0 and "acknowledged 1 of 1" in pushed.stdout, pushed.stderr
    assert "items" in pushed.stderr  # the progress bar
    assert status.returncode == 0 and "acknowledged  1" in status.stdout
    assert "review: received" in status.stdout
    assert json.loads(as_json.stdout)["acknowledged"][0]["outcome"] == "created"


def test_the_command_line_names_what_to_fix(tmp_path):
    result = run_cli(tmp_path / "nowhere", "push")
    assert result.returncode == 1
    assert "not enrolled" in result.stderr and "diiwaan-sync enroll" in result.stderr


def test_a_wrong_token_is_refused_without_retrying(live, make_client):
    server, _token = live
    tablet = make_client(backoff=quick_backoff(give_up_after=0))
    with pytest.raises(Exception, match="401") as caught:
        tablet.enroll(server.url, "not-a-real-token-000000")
    assert "unknown token" in str(caught.value)


def test_the_server_keeps_a_record_of_the_device(live, make_client):
    server, token = live
    tablet = make_client()
    tablet.enroll(server.url, token, name="blue tablet")
    tablet.pull()

    (record,) = on_server(
        server,
        select(Device.name, Device.app_version, Device.last_seen_at).where(
            Device.id == uuid.UUID(tablet.device_id)
        ),
    )

    assert record.name == "blue tablet"
    assert record.app_version.startswith("diiwaan-sync")
    assert record.last_seen_at is not None
