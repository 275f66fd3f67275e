"""factory_boy factories for the models tests need."""

from __future__ import annotations

import uuid

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from server.accounts.models import District, Region, User, Village
from server.accounts.service import hash_password
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity

# Set by tests/conftest.py for each test: the session factories write with.
current_session: Session | None = None

PASSWORD = "correct horse battery staple"


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: current_session  # noqa: E731
        sqlalchemy_session_persistence = "flush"


class RegionFactory(Base):
    class Meta:
        model = Region

    code = factory.Sequence(lambda n: f"R{n:03d}")
    name = factory.Sequence(lambda n: f"Region {n}")


class DistrictFactory(Base):
    class Meta:
        model = District

    code = factory.Sequence(lambda n: f"D{n:04d}")
    name = factory.Sequence(lambda n: f"District {n}")
    region = factory.SubFactory(RegionFactory)


class VillageFactory(Base):
    class Meta:
        model = Village

    code = factory.Sequence(lambda n: f"V{n:05d}")
    name = factory.Sequence(lambda n: f"Village {n}")
    district = factory.SubFactory(DistrictFactory)


class UserFactory(Base):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.LazyAttribute(lambda u: u.username.title())
    password_hash = factory.LazyFunction(lambda: hash_password(PASSWORD))
    role = "enumerator"
    active = True

    @factory.post_generation
    def districts(self, create: bool, extracted: list[District] | None, **_: object) -> None:
        if extracted:
            self.districts = list(extracted)
            assert current_session is not None
            current_session.flush()


class AdminFactory(UserFactory):
    role = "admin"
    username = factory.Sequence(lambda n: f"admin{n}")


class SupervisorFactory(UserFactory):
    role = "supervisor"
    username = factory.Sequence(lambda n: f"supervisor{n}")


class _EntityFactory(Base):
    """A registry record labelled by its `label_property`."""

    class Meta:
        model = Entity
        exclude = ("label_property",)

    id = factory.LazyFunction(uuid.uuid4)
    label = factory.LazyAttribute(lambda e: e.properties.get(e.label_property, ""))
    properties = factory.LazyFunction(dict)


class HouseholdFactory(_EntityFactory):
    """A household in the registry, as the registration form stores it."""

    list_name = HOUSEHOLDS
    label_property = "head_name"


class MemberFactory(_EntityFactory):
    """A person of a household (the head among them, as the form stores her)."""

    list_name = MEMBERS
    label_property = "full_name"
