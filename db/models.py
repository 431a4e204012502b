"""SQLAlchemy 2 typed models: the whole persistent state of a workspace but its files."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Named constraints so Alembic batch migrations can address them on SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SPLITS = ("train", "test")
LABELS = ("ok", "nok", "unknown")
FILE_STATUSES = ("present", "missing", "changed")


class JobStatus(enum.StrEnum):
    """Life cycle of a job, and of the run and the evaluation it works on (stored as the plain string)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
REVIEW_OUTCOMES = ("confirmed_ok", "defective", "confirmed_defect", "not_defect")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out (SQLite stores naive text; PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str | None] = mapped_column(Text)  # folder it was last imported from
    layout: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="dataset", cascade="all, delete-orphan")


class Image(Base):
    """An image referenced in place (absolute path + sha256 + size), or uploaded."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "path"),
        Index("ix_images_dataset_split_label", "dataset_id", "split", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    rel_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    split: Mapped[str | None] = mapped_column(String(8))  # "train" | "test" | None
    label: Mapped[str] = mapped_column(String(8), default="unknown")  # ok | nok | unknown
    defect_type: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(16), default="import")  # import | upload
    # "present" | "missing" (file gone) | "changed" (file there, content no longer the imported one);
    # a re-import sets it, and a file that reappears with the same content is present again
    file_status: Mapped[str] = mapped_column(String(16), default="present", server_default="present")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="images")
    masks: Mapped[list[Mask]] = relationship(
        back_populates="image", cascade="all, delete-orphan", order_by="Mask.version"
    )


class Mask(Base):
    """One saved version of an image's ground-truth mask; a save adds a row, never overwrites."""

    __tablename__ = "masks"
    __table_args__ = (UniqueConstraint("image_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer)  # the version this edit started from
    source: Mapped[str] = mapped_column(String(16))  # imported | drawn | cleared | restored
    author: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    pixels: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str | None] = mapped_column(Text)  # PNG 0/255 under workspace/masks; None when cleared
    sha256: Mapped[str | None] = mapped_column(String(64))

    image: Mapped[Image] = relationship(back_populates="masks")


class RegionOfInterest(Base):
    """Versioned dataset ROI; the latest version applies. Pixels outside are ignored."""

    __tablename__ = "rois"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    path: Mapped[str | None] = mapped_column(Text)  # None = ROI removed
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(16))  # ae | dfr
    preset: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)  # image ids, mask versions, ROI
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # training facts: loss, seconds, device
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    directory: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scores: Mapped[list[EvaluationScore]] = relationship(cascade="all, delete-orphan")


class EvaluationScore(Base):
    """Per-image outcome of one evaluation (label as it was when evaluated)."""

    __tablename__ = "evaluation_scores"
    __table_args__ = (UniqueConstraint("evaluation_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(8))
    defect_type: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    heatmap: Mapped[str | None] = mapped_column(Text)  # path relative to the evaluation folder


class Job(Base):
    """The queue: queued -> running -> succeeded | failed | cancelled."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # train | evaluate
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    eta_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claiming worker
    # each claim starts a new attempt; only the current attempt's child may write (see db.jobs.Attempt)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    child_pid: Mapped[int | None] = mapped_column(Integer)
    child_pgid: Mapped[int | None] = mapped_column(Integer)  # the reaper kills this process group ...
    child_host: Mapped[str | None] = mapped_column(String(200))  # ... when it runs on the reaper's host
    device: Mapped[str | None] = mapped_column(String(32))  # cuda / cpu, as the child resolved it
    # where the attempt runs: None/"local" (a local worker's child) or "ray" (a Ray Job on a cluster node)
    executor: Mapped[str | None] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(200))  # the executor's id of it (Ray submission id)
    node: Mapped[str | None] = mapped_column(String(200))  # the cluster node it runs on, by name (address)
    gpu: Mapped[str | None] = mapped_column(String(64))  # GPU ids it was given (CUDA_VISIBLE_DEVICES)
    log_path: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Threshold(Base):
    """One saved threshold of a run; the latest row is active, all rows are its history."""

    __tablename__ = "thresholds"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    parent_id: Mapped[int | None] = mapped_column(Integer)  # active threshold when this edit started
    image_threshold: Mapped[float] = mapped_column(Float)
    pixel_threshold: Mapped[float | None] = mapped_column(Float)
    review_low: Mapped[float | None] = mapped_column(Float)
    review_high: Mapped[float | None] = mapped_column(Float)
    rule: Mapped[str | None] = mapped_column(String(32))  # f1_max | ok_only | zero_escape | manual | roc
    set_by: Mapped[str] = mapped_column(String(100), default="auto")
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    threshold_id: Mapped[int | None] = mapped_column(ForeignKey("thresholds.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(8))
    heatmap: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Review(Base):
    """A reviewer's outcome for a flagged (FP) or missed (FN) image of an evaluation."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(24))  # see REVIEW_OUTCOMES
    moved_to_train: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewer: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkerRecord(Base):
    """A running `prefilter-qa worker` (one per GPU / host); its heartbeat says it is alive."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # host:pid
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(100))
    current_job_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Release(Base):
    """A run + threshold exported as a line bundle (model.onnx, bundle.json, golden/) by a job."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    threshold_id: Mapped[int | None] = mapped_column(ForeignKey("thresholds.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    path: Mapped[str | None] = mapped_column(Text)  # the bundle folder
    bundle_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # sha256 of bundle.json
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # parity figures, file sizes, versions
    error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LineResult(Base):
    """One verdict of the line scorer (`prefilter-qa-line`), brought back to the dashboard."""

    __tablename__ = "line_results"
    __table_args__ = (UniqueConstraint("bundle_sha256", "path", "scored_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    threshold_id: Mapped[int | None] = mapped_column(Integer)  # as the bundle carried it
    path: Mapped[str] = mapped_column(Text)  # as the line PC saw it
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), index=True)
    verdict: Mapped[str] = mapped_column(String(8))  # OK | REVIEW | NOK | ERROR
    score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    ms: Mapped[float | None] = mapped_column(Float)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    imported_by: Mapped[str] = mapped_column(String(100), default="system")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    """A dashboard account: a local password (argon2 hash) or a single-sign-on identity (OIDC)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # sign-in name (SSO: the e-mail)
    role: Mapped[str] = mapped_column(String(16), default="viewer")  # see db.auth.Role
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None: SSO only
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True)  # "issuer|sub"
    email: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)  # since the last good sign-in
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserSession(Base):
    """A signed-in browser session: only the sha256 of its random token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # absolute limit
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # signed out / revoked


class AuditEvent(Base):
    """Append-only trail of who did what when (db.audit has no update or delete; triggers refuse them)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)  # the name as it was
    user_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: the trail outlives rows
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
