"""The bridge's state: small protocols per resource (``resources``) and the ``Store`` façade that is all of
them (``interface``), typed records (``records``), and two
implementations that pass one conformance suite: ``redis.RedisStore`` (production) and
``memory.MemoryStore`` (unit tests). Import an implementation from its module; this package only
exports the interface and the records (no Redis client is imported by importing it)."""

from bridge.storage.interface import Ahead, AheadRead, ReadAheadStore, Store, hash_id
from bridge.storage.records import (
    AccessRequest,
    AuthCode,
    CliToken,
    DeviceApproval,
    DeviceCode,
    PassthroughInfo,
    PendingLogin,
    RecordError,
    SessionRecord,
    SignInNote,
    SsoClient,
)
from bridge.storage.resources import (
    AuditStore,
    AuthCodeStore,
    BesideStore,
    CliTokenStore,
    CredsStore,
    DeviceStore,
    HealthStore,
    LockStore,
    NoteStore,
    OnceStore,
    PendingStore,
    PreferenceStore,
    RateLimitStore,
    RequestStore,
    SessionStore,
    SsoClientStore,
    ViewStore,
)
from bridge.storage.scim import ScimStore

__all__ = ["AccessRequest", "Ahead", "AheadRead",
           "AuthCode", "CliToken", "DeviceApproval", "DeviceCode", "PassthroughInfo", "PendingLogin",
           "RecordError", "SessionRecord", "SignInNote", "SsoClient", "Store", "hash_id",
           # the store by resource (bridge/storage/resources.py); ``Store`` is all of them
           "AuditStore", "AuthCodeStore", "BesideStore", "CliTokenStore", "CredsStore", "DeviceStore", "HealthStore",
           "LockStore", "NoteStore", "OnceStore", "PendingStore", "PreferenceStore", "RateLimitStore",
           "ReadAheadStore", "RequestStore", "ScimStore", "SessionStore", "SsoClientStore", "ViewStore"]
