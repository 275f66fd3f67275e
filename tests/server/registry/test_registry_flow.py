"""End to end: submissions through intake and the worker into the household registry."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from defusedxml import ElementTree
from sqlalchemy import func, select

from server.blobs import blob_store
from server.catalog import service as catalog
from server.db import db
from server.intake import processing
from server.intake import service as intake
from server.intake.models import Submission
from server.registry import service as registry
from server.registry.models import (
    Entity,
    EntityConflict,
    EntityVersion,
    MatchCandidate,
    PendingChange,
    RegistryChange,
)
from tests.factories import PASSWORD, DistrictFactory, RegionFactory, SupervisorFactory, UserFactory
from tests.support.xlsforms import (
    MemberAnswers,
    default_members,
    household_instance_xml,
    household_registration_xlsx,
    villages_csv,
    xlsx_from_sheets,
)

UPDATE_FORM_ID = "household_update"


def update_form_xlsx() -> bytes:
    """A follow-up visit form that updates a household picked from the registry list."""
    return xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label", "save_to"],
                ["select_one_from_file households.csv", "hh", "Household", None],
                ["text", "phone", "Phone number now", "phone"],
                ["text", "village", "Village now", "village"],
            ],
            "entities": [["list_name", "entity_id"], ["households", "${hh}"]],
            "settings": [["form_id", "version", "form_title"], [UPDATE_FORM_ID, "1", "Revisit"]],
        }
    )


def update_instance_xml(
    entity_id: str,
    base_version: int,
    *,
    phone: str = "",
    village: str = "",
    trunk_version: int | None = None,
    branch_id: str = "",
) -> bytes:
    trunk = "" if trunk_version is None else str(trunk_version)
    return (
        f'<data id="{UPDATE_FORM_ID}" version="1"><hh>{entity_id}</hh><phone>{phone}</phone>'
        f"<village>{village}</village><meta><instanceID>uuid:{uuid.uuid4()}</instanceID>"
        f'<entity dataset="households" id="{entity_id}" update="1" baseVersion="{base_version}"'
        f' trunkVersion="{trunk}" branchId="{branch_id}"/></meta></data>'
    ).encode()


@pytest.fixture
def field(app, session):
    """Two districts of Banadir, an enumerator in each, the registration form (applied on
    receipt) and the revisit form, both assigned to both districts."""
    region = RegionFactory(code="banadir", name="Banadir")
    hodan = DistrictFactory(code="hodan", name="Hodan", region=region)
    wadajir = DistrictFactory(code="wadajir", name="Wadajir", region=region)
    settings = app.config["DIIWAAN"]
    store = blob_store(settings.data_dir)
    forms = {}
    for data, name, media in (
        (household_registration_xlsx(), "hh.xlsx", [("villages.csv", villages_csv())]),
        (update_form_xlsx(), "update.xlsx", []),
    ):
        result = catalog.upload_form(
            session,
            None,
            data=data,
            filename=name,
            store=store,
            key_encryption_key=settings.key_encryption_key,
            max_bytes=10**7,
            district_ids=[hodan.id, wadajir.id],
            attachments=media,
        )
        catalog.set_registry_mode(session, _admin(session), result.form, "receipt")
        forms[result.form.form_id] = result
    session.commit()
    return {
        "hodan": hodan,
        "wadajir": wadajir,
        "amina": UserFactory(username="amina", districts=[hodan]),
        "omar": UserFactory(username="omar", districts=[hodan]),
        "halima": UserFactory(username="halima", districts=[wadajir]),
        "store": store,
        "settings": settings,
        "forms": forms,
    }


def _admin(session):
    from tests.factories import AdminFactory

    return AdminFactory()


def submit(session, field, user, xml: bytes) -> Submission:
    incoming = intake.IncomingSubmission(xml=xml, xml_blob=field["store"].put_bytes(xml))
    decision = intake.receive(session, user, incoming)
    assert decision.stored, decision.message
    session.commit()
    return decision.submission


def drain(field) -> int:
    context = processing.WorkerContext(
        database=db, store=field["store"], key_encryption_key=field["settings"].key_encryption_key
    )
    return processing.run(context, drain=True)


def household_xml(**answers) -> bytes:
    answers.setdefault("instance_id", f"uuid:{uuid.uuid4()}")
    answers.setdefault("dwelling_photo", None)
    return household_instance_xml(**answers)


def test_processed_submission_creates_household_and_members_with_versions(session, field):
    submission = submit(session, field, field["amina"], household_xml())
    assert drain(field) == 1
    session.expire_all()
    submission = session.get(Submission, submission.id)
    assert submission.processing_state == "processed", submission.last_error
    households = session.scalars(select(Entity).where(Entity.list_name == "households")).all()
    assert len(households) == 1
    household = households[0]
    assert household.properties["head_name"].startswith("Faadumo")
    assert household.district_id == field["hodan"].id
    assert household.version == 1
    members = registry.members_of(session, household)
    assert sorted(m.properties["full_name"] for m in members) == sorted(
        m.full_name for m in default_members()
    )
    first = session.scalars(
        select(EntityVersion).where(EntityVersion.entity_id == household.id)
    ).one()
    assert first.source == "submission" and first.submission_id == submission.id
    assert first.changes["head_name"][0] is None
    feed = session.scalars(select(RegistryChange).order_by(RegistryChange.seq)).all()
    assert [c.operation for c in feed].count("create") == 4
    assert [c.seq for c in feed] == sorted(c.seq for c in feed)


def test_approval_mode_keeps_changes_pending_until_a_supervisor_approves(session, field):
    form = field["forms"]["household_registration"].form
    catalog.set_registry_mode(session, _admin(session), form, "approval")
    session.commit()
    submission = submit(session, field, field["amina"], household_xml())
    drain(field)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Entity)) == 0
    pending = session.scalars(
        select(PendingChange).where(PendingChange.submission_id == submission.id)
    ).all()
    assert {p.list_name for p in pending} == {"households", "members"}
    assert all(p.state == "pending" for p in pending)
    supervisor = SupervisorFactory(districts=[field["hodan"]])
    registry.apply_submission_changes(session, session.get(Submission, submission.id), supervisor)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Entity)) == 4


def test_reprocessing_a_submission_does_not_apply_its_changes_twice(session, field):
    submission = submit(session, field, field["amina"], household_xml())
    drain(field)
    processing.reprocess(session, failed_only=False, submission_ids=[submission.id])
    session.commit()
    drain(field)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Entity)) == 4
    assert session.scalar(select(func.count()).select_from(EntityVersion)) == 4


def test_same_household_from_two_enumerators_becomes_a_match_candidate_or_a_link(session, field):
    submit(session, field, field["amina"], household_xml())
    # Omar visits the same family a week later: English spellings, phone written with +252.
    submit(
        session,
        field,
        field["omar"],
        household_xml(
            head_first_name="Fadumo",
            head_father_name="Ali",
            head_grandfather_name="Hassan",
            phone="+252615123456",
            members=[
                MemberAnswers("Fadumo Ali Hassan", "female", "1988-03-02", "head", "no"),
                MemberAnswers("Mohamed Yusuf Abdi", "male", "1984-11-20", "spouse", "no"),
            ],
        ),
    )
    drain(field)
    session.expire_all()
    pairs = session.scalars(
        select(MatchCandidate).where(MatchCandidate.list_name == "households")
    ).all()
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair.band in ("review", "link")
    assert pair.contributions and pair.weight == pytest.approx(sum(pair.contributions.values()))
    if pair.band == "link":
        assert pair.state == "merged"
        assert pair.entity.merged_into_id == pair.candidate_id
    else:
        assert pair.state == "open"


def test_an_unrelated_household_in_the_same_village_is_treated_as_new(session, field):
    submit(session, field, field["amina"], household_xml())
    submit(
        session,
        field,
        field["omar"],
        household_xml(
            head_first_name="Cumar",
            head_father_name="Nuur",
            head_grandfather_name="Shire",
            national_id="555000111",
            phone="0617000111",
            members=[MemberAnswers("Cumar Nuur Shire", "male", "1970-01-15", "head", "no")],
        ),
    )
    drain(field)
    session.expire_all()
    assert (
        session.scalar(
            select(func.count())
            .select_from(MatchCandidate)
            .where(MatchCandidate.list_name == "households")
        )
        == 0
    )


def test_merge_and_unmerge_round_trip(session, field):
    first = submit(session, field, field["amina"], household_xml())
    second = submit(
        session,
        field,
        field["omar"],
        household_xml(
            head_first_name="Cumar",
            head_father_name="Nuur",
            national_id="1",
            phone="0617000111",
            members=[MemberAnswers("Cumar Nuur Shire", "male", "1970-01-15")],
        ),
    )
    drain(field)
    session.expire_all()
    survivor = session.scalar(
        select(Entity).where(
            Entity.created_by_submission_id == first.id, Entity.list_name == "households"
        )
    )
    merged = session.scalar(
        select(Entity).where(
            Entity.created_by_submission_id == second.id, Entity.list_name == "households"
        )
    )
    supervisor = SupervisorFactory(districts=[field["hodan"]])
    members_before = {m.id for m in registry.members_of(session, survivor)}
    record = registry.merge(session, supervisor, survivor, merged)
    session.commit()
    assert registry.get_entity(session, supervisor, merged.id).id == survivor.id
    assert {m.id for m in registry.members_of(session, survivor)} > members_before
    registry.unmerge(session, supervisor, record)
    session.commit()
    session.expire_all()
    assert registry.get_entity(session, supervisor, merged.id).id == merged.id
    assert {m.id for m in registry.members_of(session, survivor)} == members_before
    sources = [v.source for v in registry.history(session, merged)]
    assert sources == ["submission", "merge", "unmerge"]


def _registered_household(session, field) -> Entity:
    submission = submit(session, field, field["amina"], household_xml())
    drain(field)
    session.expire_all()
    return session.scalar(
        select(Entity).where(
            Entity.created_by_submission_id == submission.id, Entity.list_name == "households"
        )
    )


def test_an_update_on_the_current_version_is_applied(session, field):
    household = _registered_household(session, field)
    submit(
        session,
        field,
        field["amina"],
        update_instance_xml(str(household.id), 1, phone="0619999999"),
    )
    drain(field)
    session.expire_all()
    household = session.get(Entity, household.id)
    assert household.version == 2
    assert household.properties["phone"] == "0619999999"
    assert registry.history(session, household)[-1].changes == {
        "phone": ["0615123456", "0619999999"]
    }


def test_a_stale_offline_update_becomes_a_conflict_and_never_overwrites(session, field):
    household = _registered_household(session, field)
    # Omar changes the phone online (version 2); Amina, offline since version 1, also
    # changes the phone and the village.
    submit(
        session, field, field["omar"], update_instance_xml(str(household.id), 1, phone="0611111111")
    )
    drain(field)
    stale = submit(
        session,
        field,
        field["amina"],
        update_instance_xml(str(household.id), 1, phone="0622222222", village="bakaaro"),
    )
    drain(field)
    session.expire_all()
    household = session.get(Entity, household.id)
    assert household.properties["phone"] == "0611111111"  # the newer value stands
    assert household.properties["village"] == "bakaaro"  # the non-overlapping change merged
    conflict = session.scalars(select(EntityConflict)).one()
    assert conflict.submission_id == stale.id
    assert conflict.fields == {
        "phone": {"base": "0615123456", "server": "0611111111", "submitted": "0622222222"}
    }
    assert registry.conflicts_for_submissions(session, [stale.instance_id])[stale.instance_id]
    supervisor = SupervisorFactory(districts=[field["hodan"]])
    registry.resolve_conflict(session, supervisor, conflict, {"phone": "submitted"})
    session.commit()
    assert session.get(Entity, household.id).properties["phone"] == "0622222222"


def test_offline_updates_from_one_device_apply_in_their_order(session, field):
    household = _registered_household(session, field)
    branch = str(uuid.uuid4())
    # The second offline edit arrives first: it waits for the first.
    second = update_instance_xml(
        str(household.id), 2, phone="0633333333", trunk_version=1, branch_id=branch
    )
    first = update_instance_xml(
        str(household.id), 1, village="bakaaro", trunk_version=1, branch_id=branch
    )
    submit(session, field, field["amina"], second)
    drain(field)
    session.expire_all()
    assert session.get(Entity, household.id).version == 1
    submit(session, field, field["amina"], first)
    drain(field)
    session.expire_all()
    household = session.get(Entity, household.id)
    assert household.version == 3
    assert household.properties["phone"] == "0633333333"
    assert household.properties["village"] == "bakaaro"
    assert session.scalar(select(func.count()).select_from(EntityConflict)) == 0


def _manifest(client, user, form_id=UPDATE_FORM_ID, version="1"):
    auth = {
        "Authorization": "Basic "
        + base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    }
    response = client.get(f"/forms/{form_id}/{version}/manifest", headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    root = ElementTree.fromstring(response.data)
    ns = {"m": "http://openrosa.org/xforms/xformsManifest"}
    files = {}
    for media in root.findall("m:mediaFile", ns):
        files[media.findtext("m:filename", namespaces=ns)] = {
            "type": media.get("type"),
            "hash": media.findtext("m:hash", namespaces=ns),
            "url": media.findtext("m:downloadUrl", namespaces=ns),
        }
    return files, auth


def test_entity_list_in_the_manifest_is_district_filtered_and_its_hash_stable(
    session, field, client
):
    in_hodan = _registered_household(session, field)
    submit(
        session,
        field,
        field["halima"],
        household_xml(
            district="wadajir",
            head_first_name="Xaliimo",
            national_id="77",
            phone="0618888888",
            members=[MemberAnswers("Xaliimo Cabdi", "female", "1995-01-01")],
        ),
    )
    drain(field)
    files, auth = _manifest(client, field["amina"])
    entry = files["households.csv"]
    assert entry["type"] == "entityList"
    body = client.get(entry["url"].replace("http://localhost", ""), headers=auth)
    lines = body.get_data(as_text=True).splitlines()
    assert lines[0].startswith("name,label,__version")
    assert [line.split(",")[0] for line in lines[1:]] == [str(in_hodan.id)]
    assert entry["hash"] == "md5:" + hashlib.md5(body.data).hexdigest()
    again, _ = _manifest(client, field["amina"])
    assert again["households.csv"]["hash"] == entry["hash"]
    # A change in Wadajir does not touch Hodan's list; a change in Hodan does.
    halima_before, _ = _manifest(client, field["halima"])
    submit(
        session, field, field["amina"], update_instance_xml(str(in_hodan.id), 1, phone="0614444444")
    )
    drain(field)
    after, _ = _manifest(client, field["amina"])
    assert after["households.csv"]["hash"] != entry["hash"]
    halima_after, _ = _manifest(client, field["halima"])
    assert halima_after["households.csv"]["hash"] == halima_before["households.csv"]["hash"]


def test_the_change_feed_gives_devices_their_districts_deltas(session, field):
    household = _registered_household(session, field)
    delta = registry.entity_delta(session, field["amina"], since=0, limit=2)
    assert delta.more and len(delta.changes) == 2
    rest = registry.entity_delta(session, field["amina"], since=delta.cursor, limit=100)
    ids = {c.entity_id for c in delta.changes + rest.changes}
    assert str(household.id) in ids
    assert registry.entity_delta(session, field["halima"], since=0).changes == []


def test_merging_two_households_merges_their_shared_members_and_undo_restores_all(session, field):
    # The same family registered twice under different ids, members spelled differently.
    first = submit(session, field, field["amina"], household_xml(national_id="1", phone="0611"))
    second = submit(
        session,
        field,
        field["omar"],
        household_xml(
            head_first_name="Cumar",
            head_father_name="Nuur",
            national_id="2",
            phone="0612",
            members=[
                MemberAnswers("Fadumo Ali Hassan", "female", "1988-03-02", "head", "no"),
                MemberAnswers("Mohamed Yusuf Abdi", "male", "1984-11-20", "spouse", "no"),
            ],
        ),
    )
    drain(field)
    session.expire_all()
    keep = session.scalar(
        select(Entity).where(
            Entity.created_by_submission_id == first.id, Entity.list_name == "households"
        )
    )
    fold = session.scalar(
        select(Entity).where(
            Entity.created_by_submission_id == second.id, Entity.list_name == "households"
        )
    )
    supervisor = SupervisorFactory(districts=[field["hodan"]])
    record = registry.merge(session, supervisor, keep, fold)
    session.commit()
    session.expire_all()
    people = registry.members_of(session, keep)
    assert sorted(p.properties["full_name"] for p in people) == sorted(
        m.full_name for m in default_members()
    )  # Fadumo and Mohamed were folded into Faadumo and Maxamed
    registry.unmerge(session, supervisor, session.get(type(record), record.id))
    session.commit()
    session.expire_all()
    assert len(registry.members_of(session, keep)) == 3
    assert sorted(p.properties["full_name"] for p in registry.members_of(session, fold)) == [
        "Fadumo Ali Hassan",
        "Mohamed Yusuf Abdi",
    ]
