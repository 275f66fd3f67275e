"""Wires the registry into the rest of Diiwaan: the worker's processed-submission hook and
the entity lists (`households.csv`, `members.csv`) served to devices through form manifests."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts.models import User
from server.accounts.service import visible_district_ids
from server.catalog import service as catalog
from server.catalog.models import FormVersion
from server.intake.hooks import Processed, on_processed_batch
from server.registry import linking, service
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity

ENTITY_LISTS = (HOUSEHOLDS, MEMBERS)


def _record_changes(session: Session, processed: Sequence[Processed]) -> None:
    service.record_changes(session, [(item.submission, item.parsed) for item in processed])


class EntityListProvider:
    """Per-device CSVs of the registry, filtered to the user's districts. The bytes are
    cached per (list, districts, feed position): the hash changes exactly when a change in
    those districts lands, so ODK Collect skips unchanged lists."""

    def __init__(self, capacity: int = 64) -> None:
        self._cache: OrderedDict[tuple[Any, ...], tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def names(self, version: FormVersion) -> set[str]:
        media = set(catalog.definition_of(version).media_files)
        return {f"{name}.csv" for name in ENTITY_LISTS if f"{name}.csv" in media}

    def _csv(self, session: Session, user: User, list_name: str) -> tuple[bytes, str]:
        allowed = visible_district_ids(user)
        key = (
            list_name,
            "all" if allowed is None else tuple(sorted(allowed)),
            service.feed_position(session, user, list_name),
        )
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        content = service.entity_list_csv(session, user, list_name)
        value = (content, service.content_md5(content))
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return value

    def files(
        self, session: Session, version: FormVersion, user: User
    ) -> list[catalog.DynamicAttachment]:
        result = []
        for filename in sorted(self.names(version)):
            list_name = filename.removesuffix(".csv")
            content, md5 = self._csv(session, user, list_name)
            result.append(
                catalog.DynamicAttachment(
                    filename=filename,
                    md5=md5,
                    render=lambda content=content: content,
                    type="entityList",
                    integrity=True,
                )
            )
        return result

    def presence(
        self, session: Session, version: FormVersion, user: User, filename: str, ids: list[str]
    ) -> dict[str, bool]:
        list_name = filename.removesuffix(".csv")
        wanted = []
        for value in ids:
            try:
                wanted.append(uuid.UUID(value))
            except ValueError:
                continue
        if not wanted:
            return {}
        allowed = visible_district_ids(user)
        rows = session.execute(
            select(Entity.id, Entity.merged_into_id, Entity.deleted, Entity.district_id).where(
                Entity.id.in_(wanted), Entity.list_name == list_name
            )
        )
        return {
            str(entity_id): merged is None
            and not deleted
            and (allowed is None or district in allowed)
            for entity_id, merged, deleted, district in rows
        }


provider = EntityListProvider()


def init_app(app: Flask) -> None:
    settings = app.config["DIIWAAN"]
    on_processed_batch(_record_changes)
    catalog.register_attachment_provider(provider)
    linking.configure(
        link=settings.match_link_weight,
        review=settings.match_review_weight,
        max_candidates=settings.match_max_candidates,
        household_min_shared=settings.match_household_min_shared,
    )
