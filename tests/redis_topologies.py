"""Real Redis topologies on loopback, started and stopped by tests and benchmarks.

- ``Cluster``: 3 masters + 3 replicas (``redis-server --cluster-enabled yes`` + ``redis-cli --cluster
  create --cluster-replicas 1``), node timeout 1 s so a killed master fails over in a few seconds.
- ``SentinelGroup``: one master, one replica, three sentinels (quorum 2, down-after 1 s).
- ``TlsServer``: one ``redis-server --tls-port`` with a CA and server certificate made here by
  ``openssl`` (``make_ca``), and an ACL user limited to ``BRIDGE_COMMANDS`` (``add_acl_user``).

Every server binds 127.0.0.1 on a free port, keeps no RDB/AOF, and lives in a temporary folder;
``stop()`` ends exactly the processes it started (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

# The commands RedisStore (bridge/storage/redis.py) sends, and what redis-py sends around them: the
# ACL a deployment gives the bridge's user (docs/operations.md "Redis: topologies and memory"). Checked by
# tests/integration/test_redis_topologies.py, which runs the conformance suite and the flows as that user.
BRIDGE_COMMANDS = (
    # strings and keys
    "get", "set", "getdel", "del", "exists", "expire", "pttl",
    # rate-limit counters (redis-py sends INCR as INCRBY)
    "incrby",
    # sets and lists (browser logins, user index, CLI tokens per session, favourites, recent roles)
    "sadd", "srem", "smembers", "lpush", "lrem", "ltrim", "lrange",
    # sorted sets: IAM Identity Center client registrations counted while they live (in EVAL scripts)
    "zadd", "zremrangebyscore", "zcard",
    # the audit stream
    "xadd", "xrevrange", "xread",
    # atomic groups of commands (one hash tag: one slot); EVAL: an access request's compare-and-set
    "multi", "exec", "discard", "eval",
    # connection: readiness and health checks, SELECT when the URL names a db other than 0. AUTH and
    # HELLO need no grant; redis-py's CLIENT SETINFO may be refused (it ignores that)
    "ping", "select",
    # Cluster only: redis-py reads the slot map (CLUSTER SLOTS) and the command table (COMMAND)
    "cluster|slots", "command",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exe(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server)")
    return path


def _until(what: str, check: Callable[[], bool], seconds: float = 20.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(step)
    raise RuntimeError(f"{what}: not ready after {seconds} s")


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2, **kw)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(base: Path, name: str, *args: str, port: int | None = None, ping: bool = True) -> Server:
    """One redis-server on 127.0.0.1 (``--port``, unless ``args`` set ``--port 0`` for TLS only)."""
    port = port or free_port()
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([_exe("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(d), "--logfile", str(d / "redis.log"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = Server(port, proc, d)
    if ping:
        _until(f"redis-server {name}", lambda: bool(srv.client().ping()))
    return srv


@dataclass
class Topology:
    servers: list[Server] = field(default_factory=list)

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()


# --------------------------------------------------------------------------- Cluster


@dataclass
class Cluster(Topology):
    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}"

    def client(self) -> Any:
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.servers[0].port, socket_timeout=2)

    def masters(self) -> list[Server]:
        out = []
        for s in self.servers:
            if s.proc.poll() is None and s.client().info("replication").get("role") == "master":
                out.append(s)
        return out

    def master_for(self, key: str) -> Server:
        """The server that holds ``key``'s slot now."""
        c = self.client()
        node = c.nodes_manager.get_node_from_slot(c.keyslot(key))
        return next(x for x in self.servers if x.port == int(node.port))

    def healthy(self) -> bool:
        return all(s.client().cluster("info")["cluster_state"] == "ok"
                   for s in self.servers if s.proc.poll() is None)


def start_cluster(base: Path, *, node_timeout_ms: int = 1000) -> Cluster:
    """3 masters and 3 replicas; returns once every node sees ``cluster_state:ok``."""
    cl = Cluster()
    try:
        for i in range(6):
            cl.servers.append(start_server(base, f"node{i}", "--cluster-enabled", "yes",
                                           "--cluster-config-file", "nodes.conf",
                                           "--cluster-port", str(free_port()),  # not port + 10000
                                           "--cluster-node-timeout", str(node_timeout_ms)))
        out = subprocess.run([_exe("redis-cli"), "--cluster", "create",
                              *[f"127.0.0.1:{s.port}" for s in cl.servers],
                              "--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
        _until("cluster state ok", cl.healthy, 30)
        _until("three replicas in sync", lambda: sum(
            s.client().info("replication").get("master_link_status") == "up" for s in cl.servers) == 3, 30)
    except BaseException:
        cl.stop()
        raise
    return cl


# --------------------------------------------------------------------------- Sentinel


@dataclass
class SentinelGroup(Topology):
    name: str = "bridge"
    sentinels: list[Server] = field(default_factory=list)

    @property
    def sentinel_addrs(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def master_port(self) -> int:
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def master(self) -> Server:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        super().stop()


def start_sentinel_group(base: Path, *, name: str = "bridge", down_after_ms: int = 1000) -> SentinelGroup:
    """A master, one replica and three sentinels (quorum 2); returns once the sentinels know the
    replica and each other (so a failover can start at once)."""
    g = SentinelGroup(name=name)
    try:
        master = start_server(base, "master")
        g.servers.append(master)
        replica = start_server(base, "replica", "--replicaof", "127.0.0.1", str(master.port))
        g.servers.append(replica)
        _until("replica in sync",
               lambda: replica.client().info("replication").get("master_link_status") == "up")
        for i in range(3):
            port = free_port()
            d = base / f"sentinel{i}"
            d.mkdir(parents=True, exist_ok=True)
            conf = d / "sentinel.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                            f"sentinel monitor {name} 127.0.0.1 {master.port} 2\n"
                            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                            f"sentinel failover-timeout {name} 5000\n"
                            f"sentinel parallel-syncs {name} 1\n")
            proc = subprocess.Popen([_exe("redis-server"), str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            s = Server(port, proc, d)
            g.sentinels.append(s)

        def known() -> bool:
            for s in g.sentinels:
                m = s.client().sentinel_master(name)
                if int(m["num-slaves"]) < 1 or int(m["num-other-sentinels"]) < 2:
                    return False
            return True

        _until("sentinels see the replica and each other", known, 30, 0.1)
    except BaseException:
        g.stop()
        raise
    return g


# --------------------------------------------------------------------------- TLS and ACL


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_ca(d: Path) -> Tls:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    d.mkdir(parents=True, exist_ok=True)
    ossl = _exe("openssl")

    def run(*args: str) -> None:
        subprocess.run([ossl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bridge test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt"))
    (d / "server.key").chmod(0o600)
    return Tls(d / "ca.crt", d / "server.crt", d / "server.key")


@dataclass
class TlsServer(Topology):
    tls: Tls | None = None
    admin_password: str = "admin-pw"

    @property
    def port(self) -> int:
        return self.servers[0].port

    def admin(self) -> redis.Redis:
        """The default user (full rights) over TLS: for test harnesses, never for the bridge."""
        assert self.tls is not None
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(self.tls.ca),
                           password=self.admin_password, socket_timeout=2)

    def url(self, user: str, password: str) -> str:
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0"


def start_tls_server(base: Path) -> TlsServer:
    """A TLS-only redis-server (``--port 0 --tls-port``); the default user needs a password."""
    tls = make_ca(base / "tls")
    port = free_port()
    t = TlsServer(tls=tls)
    srv = start_server(base, "tls", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert),
                       "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no",
                       "--requirepass", t.admin_password, port=free_port(), ping=False)
    srv.port = port
    t.servers.append(srv)
    try:
        _until("TLS redis-server", lambda: bool(t.admin().ping()))
    except BaseException:
        t.stop()
        raise
    return t


def add_acl_user(client: redis.Redis, user: str, password: str, prefix: str,
                 commands: tuple[str, ...] = BRIDGE_COMMANDS) -> None:
    """``ACL SETUSER <user> on ><password> ~<prefix>* -@all +<each command>``."""
    client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{prefix}*", "-@all",
                           *[f"+{c}" for c in commands])
