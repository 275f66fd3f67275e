"""`diiwaan-sync`: the reference batch-sync client on the command line (docs/sync-client.md).

Exit status: 0 done; 1 an error to fix (message on stderr); 2 bad usage; 3 push finished
but the server refused some items (see `status`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from sync.client import Backoff, SyncClient, SyncError
from sync.transport import SyncRefused

DEFAULT_HOME = Path.home() / ".local" / "share" / "diiwaan-sync"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diiwaan-sync",
        description="Offline client for Diiwaan's batch sync API: queue encrypted "
        "submissions, push them over a bad link, pull forms and the registry slice.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("DIIWAAN_SYNC_HOME") or DEFAULT_HOME),
        help="where the device's state lives (default $DIIWAAN_SYNC_HOME or %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait on a silent link"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    enroll = commands.add_parser("enroll", help="register this device with a server")
    enroll.add_argument("url", help="the server, e.g. https://diiwaan.example.so")
    enroll.add_argument("token", help="a device token (diiwaan tokens create USER --kind device)")
    enroll.add_argument("--name", default="", help="a label for this tablet")

    commands.add_parser("pull", help="download forms, keys, the registry slice, review outcomes")

    queue = commands.add_parser("queue", help="encrypt a finished submission into the outbox")
    queue.add_argument("xml", type=Path, help="the submission XML")
    queue.add_argument("attachments", type=Path, nargs="*", help="its media files")
    queue.add_argument(
        "--remove-originals",
        action="store_true",
        help="delete the plaintext files once the ciphertext is queued",
    )

    push = commands.add_parser("push", help="send the outbox (resumes after a dropped link)")
    push.add_argument(
        "--retry-refused", action="store_true", help="send items the server refused again"
    )
    push.add_argument("--quiet", action="store_true", help="no progress bar")
    push.add_argument(
        "--give-up-after",
        type=int,
        default=12,
        help="failed attempts in a row before stopping (default %(default)s)",
    )

    status = commands.add_parser("status", help="queued, acknowledged and reviewed submissions")
    status.add_argument("--offline", action="store_true", help="do not ask the server")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    progress = None
    backoff = Backoff()
    if arguments.command == "push":
        backoff.give_up_after = arguments.give_up_after
        if not arguments.quiet:
            progress = sys.stderr
    client = SyncClient(
        arguments.home, timeout=arguments.timeout, backoff=backoff, progress=progress
    )
    try:
        return _run(client, arguments)
    except (SyncError, SyncRefused) as error:
        print(f"diiwaan-sync: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _run(client: SyncClient, arguments: argparse.Namespace) -> int:
    if arguments.command == "enroll":
        device = client.enroll(arguments.url, arguments.token, name=arguments.name)
        print(
            f"enrolled device {device['device_id']} for {device['user']} "
            f"(districts: {', '.join(device['districts']) or 'none'})"
        )
    elif arguments.command == "pull":
        result = client.pull()
        print(
            f"{result['forms']} forms ({result['forms_changed']} new or changed, "
            f"{result['forms_removed']} removed); {result['entity_changes']} registry changes, "
            f"cursor {result['cursor']}"
        )
    elif arguments.command == "queue":
        item = client.queue(
            arguments.xml, arguments.attachments, remove_originals=arguments.remove_originals
        )
        print(f"queued {item.instance_id} ({item.form_id} {item.version}, {item.size} bytes)")
    elif arguments.command == "push":
        summary = client.push(retry_refused=arguments.retry_refused)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none"
        print(
            f"acknowledged {summary.acknowledged} of {summary.listed}; refused "
            f"{summary.refused}; still queued {summary.remaining} (outcomes: {outcomes})"
        )
        for refusal in summary.refusals:
            print(f"  refused {refusal['instance_id']}: {refusal['outcome']}: {refusal['message']}")
        return 3 if summary.refused else 0
    elif arguments.command == "status":
        _print_status(client, arguments)
    return 0


def _print_status(client: SyncClient, arguments: argparse.Namespace) -> None:
    status = client.status(online=not arguments.offline)
    if arguments.json:
        print(json.dumps(asdict(status), indent=2))
        return
    print(f"queued        {len(status.queued)} ({sum(i.size for i in status.queued)} bytes)")
    print(f"refused       {len(status.refused)}")
    print(f"acknowledged  {len(status.acknowledged)}")
    print(f"forms {status.forms}, registry entities {status.entities}, cursor {status.cursor}")
    if not status.checked_online and status.acknowledged and not arguments.offline:
        print("(could not reach the server: review states as of the last check)")
    for item in status.refused:
        print(f"  refused  {item.instance_id}  {item.outcome}: {item.message}")
    for item in status.queued:
        print(f"  queued   {item.instance_id}  {item.form_id} {item.version}")
    for receipt in status.acknowledged:
        review = receipt.review_state or "not checked"
        print(f"  acked    {receipt.instance_id}  {receipt.outcome}  review: {review}")
        for conflict in receipt.conflicts:
            print(f"           conflict: {conflict}")


if __name__ == "__main__":
    sys.exit(main())
