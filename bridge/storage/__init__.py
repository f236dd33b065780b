"""The bridge's state: one ``Store`` interface (``interface``), typed records (``records``), and two
implementations that pass one conformance suite: ``redis.RedisStore`` (production) and
``memory.MemoryStore`` (unit tests). Import an implementation from its module; this package only
exports the interface and the records (no Redis client is imported by importing it)."""

from bridge.storage.interface import Ahead, AheadRead, Store, hash_id
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

__all__ = ["AccessRequest", "Ahead", "AheadRead",
           "AuthCode", "CliToken", "DeviceApproval", "DeviceCode", "PassthroughInfo", "PendingLogin",
           "RecordError", "SessionRecord", "SignInNote", "SsoClient", "Store", "hash_id"]
