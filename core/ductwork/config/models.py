"""The product config's shape, as pydantic models.

A resource section maps tags to resources. Inside a resource, a key naming one of the product's
``environments`` holds that env's provider settings (``provider:`` plus the provider's options,
validated later against its typed ``Options``); every other key is a resource-level setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from ductwork.apps.models import AppResource
from ductwork.config.durations import Duration
from ductwork.config.engine_settings import EngineQueue, EngineSettings
from ductwork.config.notifications import (
    AttachmentTemplate,
    ChannelTemplate,
    NotificationLimits,
    NotificationMessage,
    NotificationResource,
)
from ductwork.config.resource import Model as _Model
from ductwork.config.resource import Resource
from ductwork.config.sizes import Size
from ductwork.features.models import FeatureDef
from ductwork.health.models import HealthcheckDef
from ductwork.resilience.models import FallbackDef, QuotaDef
from ductwork.sessions.models import SessionDef

__all__ = [
    "SECTIONS",
    "AttachmentTemplate",
    "BrokerOffload",
    "BrokerResource",
    "CacheResource",
    "ChannelTemplate",
    "DatabaseAction",
    "DatabaseResource",
    "EngineQueue",
    "EngineSettings",
    "GraphAction",
    "GraphResource",
    "Migration",
    "NotificationLimits",
    "NotificationMessage",
    "NotificationResource",
    "Product",
    "Resource",
    "StorageResource",
]

SLUG = r"^[a-z][a-z0-9_-]{0,62}$"
Slug = Annotated[str, Field(pattern=SLUG)]
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")

INPUT_TYPES = ("str", "int", "float", "bool", "json", "bytes", "date", "datetime", "list", "dict")


class StorageResource(Resource):
    """A storage resource: files under keys."""

    section: ClassVar[str] = "storage"
    kind: ClassVar[str] = "storage"


class BrokerOffload(_Model):
    """Claim check: bodies over ``over`` go to a storage resource, a reference to the broker."""

    storage: str = Field(description="storage resource tag that holds the large bodies")
    over: Size = Field(256 * 1024, gt=0, description="bodies larger than this are offloaded")
    prefix: str = Field("events/", description="key prefix of the stored bodies")
    retention: Duration = Field(
        7 * 86400.0,
        gt=0,
        description="age at which a body is removed when the broker cannot list its groups "
        "(kafka, rabbitmq)",
    )
    prune_every: Duration = Field(
        3600.0, gt=0, description="how often a subscriber removes bodies past retention"
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        from ductwork.providers.storage import check_prefix

        try:
            return check_prefix(value)
        except Exception as exc:  # InvalidKeyError: say it as the config's error
            raise ValueError(str(exc)) from None


class BrokerResource(Resource):
    """A message broker and the events (topics) it carries."""

    section: ClassVar[str] = "brokers"
    kind: ClassVar[str] = "broker"
    topics: dict[str, str] = Field(default_factory=dict, description="event tag -> topic name")
    max_deliveries: int = Field(5, ge=1, description="deliveries before a message is dead-lettered")
    retry_delay: Duration = Field(1.0, description="first redelivery delay; doubles, with jitter")
    retry_delay_max: Duration = Field(60.0, description="cap on the redelivery delay")
    reconnect_timeout: Duration | None = Field(
        None,
        gt=0,
        description="how long a subscription keeps reconnecting after losing its broker; "
        "unset: forever",
    )
    offload: BrokerOffload | None = Field(
        None, description="store bodies over a size in a storage resource (see docs/events.md)"
    )


def _check_input_types(value: dict[str, str]) -> dict[str, str]:
    for name, type_name in value.items():
        if type_name.rstrip("?") not in INPUT_TYPES:
            raise ValueError(
                f"input {name!r} has type {type_name!r}; use one of {', '.join(INPUT_TYPES)}"
            )
    return value


class DatabaseAction(_Model):
    """A parameterised query addressed as ``database:action``."""

    query: str
    input: dict[str, str] = Field(
        default_factory=dict,
        description=f"parameter -> type ({', '.join(INPUT_TYPES)}); suffix '?' for optional",
    )
    result: Literal["rows", "one", "scalar", "count"] = "rows"
    description: str | None = None
    max_rows: int | None = Field(
        None,
        ge=1,
        description="refuse a result of more rows (read through a cursor: the rest is never "
        "fetched); result: rows only",
    )

    @field_validator("input")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_input_types(value)

    @model_validator(mode="after")
    def _max_rows_for_rows(self) -> Self:
        if self.max_rows is not None and self.result != "rows":
            raise ValueError(f"max_rows applies to result: rows, not result: {self.result}")
        return self


class Migration(_Model):
    """One ordered schema change: statements to apply it (``up``) and to undo it (``down``)."""

    tag: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,190}$")
    up: list[str] = Field(min_length=1)
    down: list[str] = Field(default_factory=list)

    @field_validator("up", "down", mode="before")
    @classmethod
    def _statements(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DatabaseResource(Resource):
    """A SQL database, its actions and its migrations."""

    section: ClassVar[str] = "databases"
    kind: ClassVar[str] = "database"
    actions: dict[str, DatabaseAction] = Field(default_factory=dict)
    migrations: list[Migration] | str = Field(
        default_factory=list,
        description="ordered migrations, or a folder of NNN_tag.up.sql / NNN_tag.down.sql files",
    )

    @field_validator("migrations")
    @classmethod
    def _unique_tags(cls, value: list[Migration] | str) -> list[Migration] | str:
        if isinstance(value, list):
            tags = [m.tag for m in value]
            repeated = sorted({t for t in tags if tags.count(t) > 1})
            if repeated:
                raise ValueError(f"migration tags must be unique; repeated: {', '.join(repeated)}")
        return value


class GraphAction(_Model):
    """A parameterised Cypher query addressed as ``graph:action`` (parameters as ``$name``)."""

    query: str
    input: dict[str, str] = Field(
        default_factory=dict,
        description=f"parameter -> type ({', '.join(INPUT_TYPES)}); suffix '?' for optional",
    )
    result: Literal["records", "one", "scalar"] = "records"
    description: str | None = None
    max_rows: int | None = Field(
        None, ge=1, description="refuse a result of more records; result: records only"
    )

    @field_validator("input")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_input_types(value)

    @model_validator(mode="after")
    def _max_rows_for_records(self) -> Self:
        if self.max_rows is not None and self.result != "records":
            raise ValueError(f"max_rows applies to result: records, not result: {self.result}")
        return self


class GraphResource(Resource):
    """A graph database and its actions."""

    section: ClassVar[str] = "graphs"
    kind: ClassVar[str] = "graph"
    actions: dict[str, GraphAction] = Field(default_factory=dict)
    schema_: list[str] = Field(
        default_factory=list,
        alias="schema",
        description="statements run once when the graph opens (node/relationship tables)",
    )


class CacheResource(Resource):
    """A cache and its default time to live."""

    section: ClassVar[str] = "caches"
    kind: ClassVar[str] = "cache"
    ttl: Duration | None = Field(None, description="default time to live; none means no expiry")
    lock: bool = Field(
        False,
        description="cached calls (cache=) take a lock in the cache on a miss, so one process of "
        "a fleet calls upstream per key per ttl (needs a provider with the add capability)",
    )
    lock_timeout: Duration = Field(
        30.0, description="how long a miss's lock is held at most (a crashed holder's expires)"
    )
    stale: Duration | None = Field(
        None,
        description="cached calls serve a value up to this long past its ttl while one caller "
        "refreshes it in the background (stale-while-revalidate)",
    )


SECTIONS: dict[str, type[Resource]] = {
    cls.section: cls
    for cls in (
        StorageResource,
        BrokerResource,
        DatabaseResource,
        GraphResource,
        CacheResource,
        NotificationResource,
    )
}


class Product(_Model):
    """The whole ``ductwork.yaml``."""

    product: Slug
    default_env: str | None = None
    environments: list[Slug] = Field(min_length=1)
    storage: dict[str, StorageResource] = Field(default_factory=dict)
    brokers: dict[str, BrokerResource] = Field(default_factory=dict)
    databases: dict[str, DatabaseResource] = Field(default_factory=dict)
    graphs: dict[str, GraphResource] = Field(default_factory=dict)
    caches: dict[str, CacheResource] = Field(default_factory=dict)
    notifications: dict[str, NotificationResource] = Field(default_factory=dict)
    apps: dict[str, AppResource] = Field(default_factory=dict, description="HTTP apps by tag")
    engine: dict[str, EngineSettings] = Field(
        default_factory=dict, description="the jobs engine per env (absent: SQLite in .ductwork/)"
    )
    features: dict[str, FeatureDef] = Field(
        default_factory=dict, description="declarative workflows by tag (see docs/features.md)"
    )
    sessions: dict[str, SessionDef] = Field(
        default_factory=dict, description="user sessions by tag (see docs/sessions.md)"
    )
    healthchecks: dict[str, HealthcheckDef] = Field(
        default_factory=dict, description="provider probes by tag (see docs/health.md)"
    )
    quotas: dict[str, QuotaDef] = Field(
        default_factory=dict, description="weighted, health-aware routing (docs/resilience.md)"
    )
    fallbacks: dict[str, FallbackDef] = Field(
        default_factory=dict, description="ordered providers, first success (docs/resilience.md)"
    )
    modules: list[str] = Field(
        default_factory=list,
        description="Python modules imported on first feature use: they register functions "
        "and code-first features",
    )
    # compiled once at load (ductwork.features.plan), so a run never parses an expression
    _plans: dict[str, Any] = PrivateAttr(default_factory=dict)
    _templates: dict[Any, Any] = PrivateAttr(default_factory=dict)
    _resilience: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self) -> Product:
        if len(set(self.environments)) != len(self.environments):
            raise ValueError("environments must not repeat")
        if self.default_env is not None and self.default_env not in self.environments:
            raise ValueError(
                f"default_env {self.default_env!r} is not one of environments "
                f"({', '.join(self.environments)})"
            )
        for env in self.engine:
            if env not in self.environments:
                raise ValueError(
                    f"engine.{env}: not one of environments ({', '.join(self.environments)})"
                )
        for tag, resource in self.notifications.items():
            for name, spec in resource.messages.items():
                for i, att in enumerate(spec.email.attachments if spec.email else ()):
                    if att.storage not in self.storage:
                        raise ValueError(
                            f"notifications.{tag}.messages.{name}.email.attachments[{i}].storage: "
                            f"no storage {att.storage!r} (storage: "
                            f"{', '.join(sorted(self.storage)) or 'none'})"
                        )
        for tag, sessions in self.sessions.items():
            cache = sessions.revocation_cache
            if cache is not None and cache not in self.caches:
                raise ValueError(f"sessions.{tag}.revocation_cache: no cache {cache!r}")
        for tag, broker in self.brokers.items():
            if broker.offload is not None and broker.offload.storage not in self.storage:
                raise ValueError(
                    f"brokers.{tag}.offload.storage: no storage resource "
                    f"{broker.offload.storage!r} (storage: {', '.join(self.storage) or 'none'})"
                )
        for section in (
            *SECTIONS,
            "apps",
            "features",
            "sessions",
            "healthchecks",
            "quotas",
            "fallbacks",
        ):
            for tag in getattr(self, section):
                if not TAG.match(tag):
                    raise ValueError(
                        f"{section}.{tag}: a tag starts with a letter and holds letters, digits, "
                        "'_', '-' or '.'"
                    )
        from ductwork.resilience.plan import compile_resilience

        self._resilience = compile_resilience(self)
        from ductwork.features.plan import compile_features

        # a ConfigError (not a ValueError) passes through pydantic with its feature path
        self._plans = compile_features(self)
        from ductwork.health.probes import compile_healthchecks

        compile_healthchecks(self)  # probes and alerts name declared targets
        from ductwork.processor.notifications import compile_messages

        self._templates = compile_messages(self)
        return self

    @property
    def feature_plans(self) -> dict[str, Any]:
        """The declarative features, compiled (:class:`ductwork.features.plan.FeaturePlan`)."""
        return self._plans

    @property
    def resilience_plans(self) -> Any:
        """Quotas, fallbacks and action limits, compiled (``resilience.plan.ResiliencePlans``)."""
        return self._resilience

    @property
    def message_templates(self) -> dict[Any, Any]:
        """Notification templates, compiled (``(notifier, message, channel, field)`` keys)."""
        return self._templates

    def resources(self) -> list[tuple[str, str, Resource]]:
        """Every resource as (section, tag, resource)."""
        return [
            (section, tag, resource)
            for section in SECTIONS
            for tag, resource in getattr(self, section).items()
        ]
