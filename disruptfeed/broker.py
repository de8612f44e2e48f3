"""A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on 127.0.0.1.

The jars come from Maven Central (see ``_jars``), so no Docker is needed. All state (config,
storage, log, pid file) lives in one data directory, so the broker outlives the process that
started it and any later process (the CLI, a test session) can find, reuse or stop it.
Readiness is always judged by a real metadata request, never by sleeping or reading the log.
"""

from __future__ import annotations

__all__ = [
    "FEED_USER",
    "BrokerStatus",
    "LocalBroker",
    "free_port",
    "has_secure_broker",
    "secure_broker",
    "wait_until_ready",
]

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disruptfeed._jars import check_tool, file_lock, resolve_kafka_jars, write_atomic
from disruptfeed._liveness import (
    is_broker_process,
    poll_ready,
    port_taken,
    probe_once,
    send_signal,
    wait_until_ready,
)
from disruptfeed._tls import BROKER_CN, make_broker_tls, write_private
from disruptfeed.errors import BrokerNotRunningError, ConnectionSecurityError, LauncherError

if TYPE_CHECKING:
    from disruptfeed.settings import Settings

log = logging.getLogger(__name__)

# The stock kafka-server-start.sh flags, minus its 1 GB heap (settings.broker_heap instead).
_JVM_FLAGS = (
    "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
)  # fmt: skip
_TAIL_LINES = 30

_SERVER_PROPERTIES = """\
# Written by disruptfeed on every broker start; edits are lost.
# A KRaft node, broker and controller in one JVM, on loopback only.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
{listeners}log.dirs={log_dirs}
num.partitions={n}
# Topics are created on purpose, with their own retention: a typo must fail, not create one.
auto.create.topics.enable=false
# Internal topics default to replication 3 / min ISR 2, impossible on one node.
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
# The 3 s default only helps large groups; here it would delay every first join.
group.initial.rebalance.delay.ms=0
"""

_PLAIN_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""

# --secure. Clients have one listener, SASL_SSL: TLS with the throwaway CA's certificate, then
# SCRAM-SHA-512 (or SCRAM-SHA-256, or PLAIN) as the feed user. The broker reaches itself on the
# same listener as the SCRAM user 'broker' (inter-broker traffic: transaction markers, and
# replication once there are more nodes), so no second client-facing port exists. The controller
# listener is TLS with client certificates required, the broker's own (KRaft cannot take SCRAM
# there: the credentials live in the metadata the controller serves), so no port on this host
# answers anyone without a credential. StandardAuthorizer: the broker (by SCRAM and by
# certificate) and the feed user are super users; any other principal, ANONYMOUS included, may
# do nothing until it is given ACLs.
_SECURE_LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{broker_user}" password="{broker_password}";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required \
user_{feed_user}="{feed_password}";
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{broker_user};User:{feed_user};User:CN={broker_cn}
"""

FEED_USER = "feed"
"""The secure broker's SASL user for every client of the feed."""
_BROKER_USER = "broker"

_LOG4J2_PROPERTIES = """\
# Written by disruptfeed on every broker start; edits are lost.
# Log4j's own shutdown hook would stop logging while Kafka is still shutting down.
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# One line per slow request would drown everything else.
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""

_LOG4J2_FILE_APPENDER = """\
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.appenderRef.file.ref = FILE
"""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What is known about the broker of one data directory.

    Attributes:
        running: A broker process started from this data directory is alive.
        pid: Its process id, or None when not running.
        bootstrap_servers: The running broker's address, else the configured one.
        data_dir: The broker's data directory.
        version: Kafka version of the running broker, else the configured one.
        answering: The broker answered a metadata request just now.
    """

    running: bool
    pid: int | None
    bootstrap_servers: str
    data_dir: Path
    version: str
    answering: bool

    @property
    def log_file(self) -> Path:
        """The broker's log (the previous run's is ``broker.log.1``)."""
        return self.data_dir / "broker.log"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secure_broker(settings: Settings) -> LocalBroker:
    """The broker of ``broker start --secure``, beside the plaintext one.

    Its own data directory (``<data dir>/secure-broker``: a separate cluster, formatted with
    its SCRAM users) and its own ports, chosen free on its first use and kept in
    ``ports.json``, so that it can run next to the demo's plaintext broker.

    Args:
        settings: Project settings (data dir, Kafka version, heap, partitions).
    """
    data_dir = settings.data_dir / "secure-broker"
    layout = data_dir / "ports.json"
    if layout.is_file():
        port, cport = json.loads(layout.read_text(encoding="utf-8"))["ports"]
    else:
        port, cport = free_port(), free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(layout, json.dumps({"ports": [port, cport]}) + "\n")
    return LocalBroker(settings, data_dir=data_dir, port=port, controller_port=cport, secure=True)


def has_secure_broker(settings: Settings) -> bool:
    """True once ``broker start --secure`` has been run with these settings' data dir."""
    return (settings.data_dir / "secure-broker" / "ports.json").is_file()


class LocalBroker:
    """Start, stop and inspect the single-node broker of one data directory.

    Args:
        settings: Project settings (Kafka version, heap, partitions, cache and data dirs).
        data_dir: Broker state directory; default ``settings.data_dir / "broker"``.
        port: Client port (PLAINTEXT, or SASL_SSL when secure); default ``settings.broker_port``.
        controller_port: KRaft controller port; default ``settings.controller_port``.
        node_id: This node's id in its cluster.
        voters: The cluster's ``controller.quorum.voters``; default this node alone.
        nodes: How many nodes the cluster has (internal topics are replicated to up to 3).
        log_to_console: Send the broker's output to this process's stdout (it keeps writing
            there after this process exits) and to ``broker.log``; for debugging.
        secure: Clients get a SASL_SSL listener instead of PLAINTEXT: a throwaway CA and broker
            certificate and random SCRAM passwords are made in ``data_dir`` on the first start
            (see ``_SECURE_LISTENERS``); :meth:`client_settings` says how to connect.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        node_id: int = 1,
        voters: str | None = None,
        nodes: int = 1,
        log_to_console: bool = False,
        secure: bool = False,
    ) -> None:
        self.settings = settings
        self.secure = secure
        # Absolute: the path of server.properties identifies our broker in the process table.
        self.data_dir = (data_dir or settings.data_dir / "broker").expanduser().resolve()
        self.port = settings.broker_port if port is None else port
        self.controller_port = (
            settings.controller_port if controller_port is None else controller_port
        )
        self.version = settings.kafka_version
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.nodes = nodes
        self.log_to_console = log_to_console
        self._proc: _Detached | None = None
        self._props = self.data_dir / "server.properties"
        self._log4j = self.data_dir / "log4j2.properties"
        self._log_dirs = self.data_dir / "kraft-logs"
        self._pid_file = self.data_dir / "broker.json"
        self._log_file = self.data_dir / "broker.log"
        self._credentials = self.data_dir / "credentials.json"

    @property
    def bootstrap_servers(self) -> str:
        """The configured client address, ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def client_settings(self) -> Settings:
        """``settings`` pointed at this broker: with the feed user's TLS and SCRAM when secure.

        For a secure broker this makes its certificates and passwords if they do not exist yet
        (they are kept in ``data_dir``, so they stay the same across restarts).
        """
        update: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.secure:
            from pydantic import SecretStr

            tls = make_broker_tls(self.data_dir / "tls")
            update |= {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": FEED_USER,
                "sasl_password": SecretStr(self._passwords()[FEED_USER]),
                "ssl_ca_file": tls.ca_file,
                "ssl_cert_file": None,
                "ssl_key_file": None,
                "ssl_key_password": None,
            }
        return self.settings.model_copy(update=update)

    def client_env(self) -> dict[str, str]:
        """The ``DISRUPTFEED_*`` variables of :meth:`client_settings` (the password included)."""
        client = self.client_settings()
        env = {"DISRUPTFEED_BOOTSTRAP_SERVERS": client.bootstrap}
        if self.secure:
            assert client.sasl_password is not None
            env |= {
                "DISRUPTFEED_SECURITY_PROTOCOL": client.security_protocol,
                "DISRUPTFEED_SASL_MECHANISM": str(client.sasl_mechanism),
                "DISRUPTFEED_SASL_USERNAME": str(client.sasl_username),
                "DISRUPTFEED_SASL_PASSWORD": client.sasl_password.get_secret_value(),
                "DISRUPTFEED_SSL_CA_FILE": str(client.ssl_ca_file),
            }
        return env

    def _client_kwargs(self) -> dict[str, Any] | None:
        """What readiness probes connect with: None (PLAINTEXT) or the secure client's options."""
        return self.client_settings().client_kwargs() if self.secure else None

    def _passwords(self) -> dict[str, str]:
        """The SCRAM users' passwords: random, made once, kept in credentials.json (0600)."""
        try:
            stored: dict[str, str] = json.loads(self._credentials.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = {}
        if not all(stored.get(user) for user in (_BROKER_USER, FEED_USER)):
            import secrets

            # URL-safe characters only: they need no quoting in StorageTool's --add-scram
            # syntax, in a JAAS line or in a shell.
            stored = {user: secrets.token_urlsafe(24) for user in (_BROKER_USER, FEED_USER)}
            self.data_dir.mkdir(parents=True, exist_ok=True)
            write_private(self._credentials, json.dumps(stored) + "\n")
        return stored

    def resolve_jars(self, progress: Callable[[str], None] | None = None) -> Path:
        """Download this Kafka version's jars into the cache once; return the ``lib`` dir.

        Args:
            progress: Called with a line of text before each slow step.

        Raises:
            MissingToolError: ``mvn`` or ``java`` is not installed.
            LauncherError: Maven failed; the message ends with its output.
        """
        return resolve_kafka_jars(self.version, self.settings.cache_dir, progress)

    def start(
        self, timeout: float = 90.0, *, progress: Callable[[str], None] | None = None
    ) -> BrokerStatus:
        """Start the broker, or return the status of the one already running from data_dir.

        Args:
            timeout: Seconds the broker has to answer once launched (the one-time jar download
                and storage format do not count).
            progress: Passed to :meth:`resolve_jars`.

        Raises:
            MissingToolError: ``java`` or ``mvn`` is missing.
            LauncherError: A port is taken, the jars cannot be resolved, or the broker exited or
                did not answer in time (the message ends with its last log lines).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Held until the broker answers, so a concurrent start() reuses it instead of racing.
        with file_lock(self.data_dir / ".lock"):
            record = self._live_record()
            if record is not None:
                return self._adopt(record, timeout)
            pid = self._launch_new(progress)
            self._await_ready(pid, timeout)
            return BrokerStatus(
                True, pid, self.bootstrap_servers, self.data_dir, self.version, True
            )

    def launch(self, progress: Callable[[str], None] | None = None) -> int | None:
        """Launch the node without waiting for it to answer; None if it runs already.

        For a cluster, whose nodes answer only once a quorum of them runs
        (:class:`disruptfeed._cluster.LocalCluster`); then :meth:`await_ready`.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.data_dir / ".lock"):
            if self._live_record() is not None:
                return None
            return self._launch_new(progress)

    def await_ready(self, pid: int, timeout: float) -> None:
        """Wait for a :meth:`launch` ed node to answer (LauncherError, node stopped, if not)."""
        self._await_ready(pid, timeout)

    def _launch_new(self, progress: Callable[[str], None] | None) -> int:
        self._pid_file.unlink(missing_ok=True)  # stale: the broker crashed or was killed
        self._check_ports()
        lib = self.resolve_jars(progress)
        java = check_tool("java")
        self._write_configs()
        self._format_storage(java, lib)
        return self._launch(java, lib)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the broker with SIGTERM (a clean shutdown), with SIGKILL only after ``timeout``.

        Returns:
            True if a broker was running, False if there was nothing to stop.
        """
        if not self.data_dir.is_dir():
            return False
        with file_lock(self.data_dir / ".lock"):
            record = self._live_record()
            if record is None:
                self._pid_file.unlink(missing_ok=True)
                return False
            pid = int(record["pid"])
            send_signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                log.warning("Kafka broker %d ignored SIGTERM for %g s; killing it", pid, timeout)
                send_signal(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
            self._pid_file.unlink(missing_ok=True)
            return True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (its pid file stays behind, as after a crash)."""
        record = self._live_record()
        if record is not None:
            send_signal(int(record["pid"]), signal.SIGKILL)
            self._wait_exit(int(record["pid"]), 10.0)

    def status(self) -> BrokerStatus:
        """Report whether the broker runs and, if so, whether it answers (within ~2 s)."""
        record = self._live_record()
        if record is None:
            return BrokerStatus(
                False, None, self.bootstrap_servers, self.data_dir, self.version, False
            )
        bootstrap = f"127.0.0.1:{record['port']}"
        try:
            answering = probe_once(bootstrap, 2.0, self._client_kwargs()) is None
        except ConnectionSecurityError:
            answering = False
        pid = int(record["pid"])
        return BrokerStatus(True, pid, bootstrap, self.data_dir, record["version"], answering)

    # --- process bookkeeping -------------------------------------------------------------------

    def _live_record(self) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self._pid_file.read_text(encoding="utf-8"))
            alive = self._is_alive(int(record["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record if alive else None

    def _is_alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None  # our child: waitpid is exact, and reaps it
        return is_broker_process(pid, self._props)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._is_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _adopt(self, record: dict[str, Any], timeout: float) -> BrokerStatus:
        wanted = (self.port, self.controller_port, self.version)
        if bool(record.get("secure")) != self.secure:
            kind = "secure (SASL_SSL)" if record.get("secure") else "plaintext"
            raise LauncherError(
                f"a {kind} broker from {self.data_dir} (pid {record['pid']}) already runs; "
                "stop it first (disruptfeed broker stop)"
            )
        if (record.get("port"), record.get("controller_port"), record.get("version")) != wanted:
            raise LauncherError(
                f"a Kafka {record.get('version')} broker from {self.data_dir} (pid "
                f"{record['pid']}) already runs on ports {record.get('port')}/"
                f"{record.get('controller_port')}, not Kafka {self.version} on {self.port}/"
                f"{self.controller_port} as requested; stop it first (disruptfeed broker stop)"
            )
        try:
            wait_until_ready(self.bootstrap_servers, timeout, client_kwargs=self._client_kwargs())
        except (BrokerNotRunningError, ConnectionSecurityError) as exc:
            raise LauncherError(
                f"the broker from {self.data_dir} (pid {record['pid']}) runs but did not answer "
                f"within {timeout:g} s; stop it and retry.{self._tail()}"
            ) from exc
        pid = int(record["pid"])
        return BrokerStatus(True, pid, self.bootstrap_servers, self.data_dir, self.version, True)

    # --- start-up steps ------------------------------------------------------------------------

    def _check_ports(self) -> None:
        if self.port == self.controller_port:
            raise LauncherError(f"the broker and controller ports are both {self.port}")
        prefix = str(type(self.settings).model_config.get("env_prefix", ""))
        for port, field in ((self.port, "broker_port"), (self.controller_port, "controller_port")):
            if port_taken(port):
                raise LauncherError(
                    f"port {port} on 127.0.0.1 is in use by another program (not a broker from "
                    f"{self.data_dir}); stop that program or choose another port with "
                    f"{prefix}{field.upper()} (settings.{field})"
                )

    def _write_configs(self) -> None:
        rf = min(self.nodes, 3)
        values = {
            "port": self.port,
            "cport": self.controller_port,
            "log_dirs": self._log_dirs,
            "node_id": self.node_id,
            "voters": self.voters,
            "rf": rf,
            "isr": 2 if rf >= 3 else 1,
        }
        listeners = _PLAIN_LISTENERS.format(port=self.port, cport=self.controller_port)
        if self.secure:
            tls = make_broker_tls(self.data_dir / "tls")
            passwords = self._passwords()
            listeners = _SECURE_LISTENERS.format(
                port=self.port,
                cport=self.controller_port,
                broker_user=_BROKER_USER,
                broker_password=passwords[_BROKER_USER],
                feed_user=FEED_USER,
                feed_password=passwords[FEED_USER],
                keystore=tls.keystore_file,
                ca=tls.ca_file,
                broker_cn=BROKER_CN,
            )
        text = _SERVER_PROPERTIES.format(**values, listeners=listeners, n=self.settings.partitions)
        # A secure broker's file holds passwords: readable by this user only.
        (write_private if self.secure else write_atomic)(self._props, text)
        log4j = _LOG4J2_PROPERTIES
        if self.log_to_console:  # stdout is the console then; the file needs its own appender
            log4j += _LOG4J2_FILE_APPENDER.format(log_file=self._log_file)
        write_atomic(self._log4j, log4j)

    def _format_storage(self, java: str, lib: Path) -> None:
        if (self._log_dirs / "meta.properties").is_file():
            return  # formatted by an earlier start; StorageTool would refuse to do it again
        id_file = self.data_dir / "cluster.id"
        # Persisted before formatting, so a retry after a failed format keeps the same id.
        if not id_file.is_file():
            write_atomic(id_file, _new_cluster_id() + "\n")
        cluster_id = id_file.read_text(encoding="utf-8").strip()
        # No --standalone: controller.quorum.voters already names the (static) quorum.
        cmd = [
            java, f"-Dlog4j2.configurationFile={self._log4j}", "-cp", f"{lib}/*",
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self._props),
        ]  # fmt: skip
        if self.secure:
            # SCRAM credentials go into the first metadata, so they exist before any client.
            # (They are on StorageTool's command line for its few seconds: it takes no file.)
            passwords = self._passwords()
            for mechanism, user in (
                ("SCRAM-SHA-512", _BROKER_USER),
                ("SCRAM-SHA-512", FEED_USER),
                ("SCRAM-SHA-256", FEED_USER),
            ):
                cmd += ["--add-scram", f"{mechanism}=[name={user},password={passwords[user]}]"]
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=180, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").splitlines()
            raise LauncherError(
                f"formatting Kafka storage in {self._log_dirs} failed (exit {done.returncode}):\n"
                + "\n".join(output[-_TAIL_LINES:])
            )

    def _launch(self, java: str, lib: Path) -> int:
        if self._log_file.exists():
            self._log_file.replace(self.data_dir / "broker.log.1")
        heap = self.settings.broker_heap
        cmd = [
            java, f"-Xmx{heap}", f"-Xms{heap}", *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self._log4j}",
            "-cp", f"{lib}/*", "kafka.Kafka", str(self._props),
        ]  # fmt: skip
        out = None if self.log_to_console else self._log_file.open("ab")
        try:
            # A new session: Ctrl-C in the terminal that started it must not kill the broker.
            self._proc = _Detached(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=None if out is None else subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        pid = self._proc.pid
        record: dict[str, Any] = {"pid": pid, "port": self.port, "version": self.version}
        record["secure"] = self.secure
        record |= {"controller_port": self.controller_port, "started": time.ctime()}
        write_atomic(self._pid_file, json.dumps(record) + "\n")
        return pid

    def _await_ready(self, pid: int, timeout: float) -> None:
        def check_alive() -> None:
            if not self._is_alive(pid):
                self._pid_file.unlink(missing_ok=True)
                code = None if self._proc is None else self._proc.returncode
                raise LauncherError(
                    f"the Kafka broker exited during start-up (exit {code}).{self._tail()}"
                )

        deadline = time.monotonic() + timeout
        error = poll_ready(self.bootstrap_servers, deadline, self._client_kwargs(), check_alive)
        if error is None:
            return
        # Leave nothing half-started behind: the caller gets an error, not a stray JVM.
        send_signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, 15.0):
            send_signal(pid, signal.SIGKILL)
            self._wait_exit(pid, 5.0)
        self._pid_file.unlink(missing_ok=True)
        raise LauncherError(
            f"the Kafka broker did not answer at {self.bootstrap_servers} within {timeout:g} s "
            f"({error}), so it was stopped.{self._tail()}"
        )

    def _tail(self) -> str:
        try:
            with self._log_file.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
                text = "\n".join(handle.read().decode(errors="replace").splitlines()[-_TAIL_LINES:])
        except OSError:
            return f"\n(no log at {self._log_file})"
        hint = ""
        if "UnsupportedClassVersionError" in text:
            hint = f"\nKafka {self.version} needs Java 17 or newer on PATH."
        elif "Address already in use" in text:
            hint = "\nA port was taken while the broker started; choose other ports."
        return f"\nLast lines of {self._log_file}:\n{text}{hint}"


class _Detached(subprocess.Popen[bytes]):
    """A child meant to outlive this object and this process.

    Popen's ResourceWarning on collecting a running child would be an error under our pytest
    settings, yet a detached broker is supposed to keep running.
    """

    def __del__(self) -> None:
        if self.returncode is None:
            self.poll()  # reap it if it has exited; otherwise leave it alone


def _new_cluster_id() -> str:
    while True:
        # Like Kafka's Uuid.randomUuid(): an id starting with "-" reads as an option to
        # StorageTool's parser, and newer Kafka avoids "-" anywhere in generated ids.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if "-" not in cluster_id:
            return cluster_id
