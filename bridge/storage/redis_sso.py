"""``RedisStore``'s part for IAM Identity Center's protocol: registered clients, counted while they live,
and authorization codes (single use).

Keys (under the key prefix)::

    ssoclient:<client id>                  SsoClient JSON, TTL = until its first use, then its lifetime
    ssoclients:{index}:all                 sorted set: client id → when it ends (epoch seconds)
    ssoclients:{index}:<address hash>      the same, for the clients registered from one address
    authcode:<code hash>                   AuthCode JSON (single use, GETDEL)

The counts share one hash tag, so one script checks both caps and counts a new client in one step (on a
Cluster too); an entry past its end is dropped at the next registration. Commands: ZADD,
ZREMRANGEBYSCORE, ZCARD besides the string ones (docs/operations.md, the ACL).
"""

from __future__ import annotations

from bridge.storage.records import AuthCode, RecordError, SsoClient
from bridge.storage.redis_client import RedisBase

# KEYS: all, the address's; ARGV: now, per-address cap, total cap, ttl, client id → 0 added, 1/2 that cap full.
_ADD = """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[5])
  if redis.call('PTTL', KEYS[i]) < ttl * 1000 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 0
"""
# KEYS: the counts the client is in; ARGV: its new end, ttl, client id (only if still counted: XX).
_MOVE = """
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', tonumber(ARGV[1]), ARGV[3])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) * 1000 then redis.call('EXPIRE', KEYS[i], ARGV[2]) end
end
return 0
"""
_FULL = {1: "address", 2: "total"}


class SsoKeys(RedisBase):
    """Registered clients and authorization codes in Redis."""

    def _counts(self, address: str) -> tuple[str, str]:
        return self.keys.tagged("ssoclients", "index", "all"), self.keys.tagged("ssoclients", "index", address or "-")

    def add_sso_client(self, client: SsoClient, ttl: int, *, per_address: int, total: int) -> str | None:
        """Store a new registration unless a cap is reached: None when stored, else "address" or "total"."""
        ttl = max(1, int(ttl))
        with self.errors():
            full = int(self.r.eval(_ADD, 2, *self._counts(client.address), int(self.clock()), per_address, total,
                                   ttl, client.client_id))
        if full:
            return _FULL[full]
        self._put_json("ssoclient", client.client_id, client.to_json(), ttl)
        return None

    def put_sso_client(self, client: SsoClient, ttl: int) -> None:
        ttl = max(1, int(ttl))
        self._put_json("ssoclient", client.client_id, client.to_json(), ttl)
        with self.errors():
            self.r.eval(_MOVE, 2, *self._counts(client.address), int(self.clock()) + ttl, ttl, client.client_id)

    def get_sso_client(self, client_id: str) -> SsoClient | None:
        doc = self._get_json("ssoclient", client_id)
        try:
            return None if doc is None else SsoClient.from_json(doc)
        except RecordError:
            return None

    def sso_client_count(self) -> int:
        """Registered clients alive now (the ``bridge_sso_clients`` gauge)."""
        key = self._counts("")[0]
        with self.errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.zremrangebyscore(key, "-inf", int(self.clock()))
            pipe.zcard(key)
            return int(pipe.execute()[1])

    def put_auth_code(self, chash: str, code: AuthCode, ttl: int) -> None:
        self._put_json("authcode", chash, code.to_json(), ttl)

    def take_auth_code(self, chash: str) -> AuthCode | None:
        doc = self._take_json("authcode", chash)
        try:
            return None if doc is None else AuthCode.from_json(doc)
        except RecordError:
            return None
