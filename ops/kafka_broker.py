"""Kafka brokers for gridloop's log: a local KRaft node from Maven Central jars, a container, or an external cluster."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import structlog
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from engine.errors import GridloopError
from ops.config import Settings

log = structlog.get_logger()

SCALA_VERSION = "2.13"
FETCHED_MARKER = "fetched.json"
FETCH_TIMEOUT_SECONDS = 900.0
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.1"
"""testcontainers' KafkaContainer runs Confluent's images only; 7.9 carries Apache Kafka 3.9."""
TEMPLATES = resources.files("ops") / "kafka"
"""pom.xml (the jars to fetch), server.properties and log4j.properties of the local broker."""
LISTENERS = re.compile(r"^listeners=PLAINTEXT://127\.0\.0\.1:(\d+),CONTROLLER://127\.0\.0\.1:(\d+)$", re.MULTILINE)


class BrokerUnavailable(GridloopError):
    """No Kafka broker could be provided or reached; the message says why and what to do."""


class TopicsRefused(GridloopError):
    """The broker refused to create topics gridloop needs."""


@dataclass(frozen=True)
class Broker:
    """A Kafka cluster gridloop can reach, and where it came from."""

    bootstrap: str
    """host:port[,host:port], as Kafka clients take it."""
    provisioner: str
    pid: int | None = None
    """The broker's process (local provisioner only)."""
    cluster_id: str | None = None


class Provisioner(Protocol):
    """Brings a broker up (or returns the one running), takes it down, says whether it is there."""

    def up(self) -> Broker: ...

    def down(self) -> None: ...

    def status(self) -> Broker | None: ...


def provisioner(settings: Settings) -> Provisioner:
    """The provisioner settings.kafka_provisioner names."""
    kinds = {"local": LocalBroker, "container": ContainerBroker, "external": ExternalBroker}
    chosen: Provisioner = kinds[settings.kafka_provisioner](settings)
    return chosen


# -- the local broker -----------------------------------------------------------------------


def fetch_jars(settings: Settings) -> Path:
    """The folder of the broker's jars for settings.kafka_version: fetched with Maven once, then reused."""
    home = settings.kafka_cache_dir / settings.kafka_version
    libs, marker = home / "libs", home / FETCHED_MARKER
    if marker.is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable("mvn not found on PATH: install Maven (Debian: apt-get install maven) to fetch Kafka")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.is_file():  # another process fetched them while this one waited
            return libs
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=home, prefix="fetching-") as work:
            jars = _maven_copy_dependencies(mvn, settings.kafka_version, Path(work))
            if libs.exists():  # left by an interrupted fetch: without the marker its jars are not trusted
                shutil.rmtree(libs)
            jars[0].parent.rename(libs)
        marker.write_text(json.dumps({"version": settings.kafka_version, "jars": [j.name for j in jars]}, indent=1))
    seconds = round(time.monotonic() - started, 1)
    log.info("kafka_jars_fetched", version=settings.kafka_version, jars=len(jars), seconds=seconds)
    return libs


def _maven_copy_dependencies(mvn: str, version: str, work: Path) -> list[Path]:
    """Resolve the broker's jars with Maven (through ~/.m2 as usual) and copy them into work/libs."""
    pom, output = work / "pom.xml", work / "libs"
    pom.write_text(_template("pom.xml", scala=SCALA_VERSION, kafka=version))
    command = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={output}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise BrokerUnavailable(f"mvn did not fetch Kafka within {FETCH_TIMEOUT_SECONDS:.0f} s") from None
    jars = sorted(output.glob("*.jar"))
    if done.returncode != 0 or not jars:
        raise BrokerUnavailable(
            f"mvn could not fetch org.apache.kafka:kafka_{SCALA_VERSION}:{version} from Maven Central "
            f"(exit {done.returncode}; network access is needed the first time):\n{_tail(done.stdout + done.stderr)}"
        )
    return jars


class LocalBroker:
    """A single-node KRaft broker (broker and controller in one JVM) on loopback, its data in settings.kafka_dir."""

    name = "local"

    def __init__(self, settings: Settings, start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.home = settings.kafka_dir.resolve()  # the JVM and its properties files take absolute paths best
        self.state_file = self.home / "broker.json"
        self.properties = self.home / "server.properties"
        self.log_file = self.home / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None
        """The broker this object started, if it did: polled, so that it is reaped once it exits."""

    def status(self) -> Broker | None:
        state = self._state()
        if state is None or not self._running(state["pid"]) or not _accepts(state["port"]):
            return None
        return self._broker(state)

    def up(self) -> Broker:
        state = self._state()
        if state is not None and self._running(state["pid"]):
            # Running, or still starting (perhaps from another process): wait for it rather than start a second.
            self._wait_until_ready(state)
            return self._broker(state)
        return self._start(same_ports=False)

    def down(self) -> None:
        state = self._state()
        if state is not None:
            self._stop(state["pid"])
            self.state_file.unlink(missing_ok=True)
            log.info("broker_stopped", bootstrap=f"127.0.0.1:{state['port']}", pid=state["pid"])

    def restart(self) -> Broker:
        """Stop the broker (if it runs) and start it again on the same ports with the same data."""
        self.down()
        return self._start(same_ports=True)

    def _start(self, same_ports: bool) -> Broker:
        libs, java = fetch_jars(self.settings), _java()
        self.home.mkdir(parents=True, exist_ok=True)
        port, controller_port = self._ports(same_ports)
        data, partitions = self.home / "data", self.settings.kafka_partitions
        properties = _template(
            "server.properties", port=port, controller_port=controller_port, data=data, partitions=partitions
        )
        self.properties.write_text(properties)
        (self.home / "log4j.properties").write_text(_template("log4j.properties"))
        options = [f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}", "-cp", str(libs / "*")]
        cluster_id = self._format([java, *options])
        started = time.monotonic()
        with self.log_file.open("ab") as output:
            self._process = subprocess.Popen(
                [java, "-Xmx512m", "-Xms256m", *options, "kafka.Kafka", str(self.properties)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `gridloop kafka up`; the terminal's Ctrl-C does not reach it
            )
        state = {"pid": self._process.pid, "port": port, "controller_port": controller_port, "cluster_id": cluster_id}
        self.state_file.write_text(json.dumps(state, indent=1))
        try:
            self._wait_until_ready(state)
        except BrokerUnavailable:
            self.down()
            raise
        seconds = round(time.monotonic() - started, 2)
        log.info("broker_started", bootstrap=f"127.0.0.1:{port}", pid=self._process.pid, seconds=seconds)
        return self._broker(state)

    def _format(self, jvm: list[str]) -> str:
        """The cluster id of the data directory, formatted first if this is its first start."""
        meta = self.home / "data" / "meta.properties"
        if not meta.is_file():
            command = [*jvm, "kafka.tools.StorageTool", "format", "-t", _new_cluster_id(), "-c", str(self.properties)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS)
            if done.returncode != 0:
                raise BrokerUnavailable(f"Kafka could not format {meta.parent}:\n{_tail(done.stdout + done.stderr)}")
        found = re.search(r"^cluster\.id=(\S+)$", meta.read_text(), re.MULTILINE)
        if found is None:
            raise BrokerUnavailable(f"{meta} names no cluster.id; delete {self.home} to start afresh")
        return found.group(1)

    def _ports(self, same_ports: bool) -> tuple[int, int]:
        """The ports of the previous start when free (clients keep their address), new ones otherwise."""
        found = LISTENERS.search(self.properties.read_text()) if self.properties.is_file() else None
        previous = (int(found.group(1)), int(found.group(2))) if found else None
        if previous and all(_free(p) for p in previous):
            return previous
        if same_ports and previous:
            raise BrokerUnavailable(f"cannot restart the broker on its ports {previous}: another process holds one")
        return _free_ports()

    def _wait_until_ready(self, state: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not _accepts(state["port"]):
            if not self._running(state["pid"]):
                raise BrokerUnavailable(f"the Kafka broker exited while starting; {self._log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"the Kafka broker did not open its port in time; {self._log_tail()}")
            time.sleep(0.1)
        if not _answers(f"127.0.0.1:{state['port']}", max(1.0, deadline - time.monotonic())):
            raise BrokerUnavailable(f"the Kafka broker opened its port but did not answer; {self._log_tail()}")

    def _stop(self, pid: int) -> None:
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 10.0)):
            if not self._running(pid):
                return
            if sig == signal.SIGKILL:
                log.warning("broker_killed", pid=pid, after_seconds=STOP_TIMEOUT_SECONDS)
            os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self._running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._running(pid):
            raise BrokerUnavailable(f"the Kafka broker (pid {pid}) did not stop, even when killed")

    def _running(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None  # reaps it once it has exited
        return _is_broker_process(pid)

    def _state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state

    def _broker(self, state: dict[str, Any]) -> Broker:
        return Broker(f"127.0.0.1:{state['port']}", self.name, pid=state["pid"], cluster_id=state["cluster_id"])

    def _log_tail(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.is_file() else "(no log)"
        return f"the end of {self.log_file}:\n{_tail(text)}"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerUnavailable(
            "java not found (JAVA_HOME or PATH): the local Kafka broker needs Java 17 or later "
            "(Debian: apt-get install default-jre-headless)"
        )
    return found


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64, never starting with '-' (read as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _is_broker_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    # The command line, not just the pid: a recycled pid must not pass for the broker (down() would signal it).
    # It reads empty now and then while the JVM holds its memory map locked, and for good in a zombie.
    return state != "Z" and (not cmdline or b"kafka.Kafka" in cmdline.split(b"\0"))


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds: TIME_WAIT does not block
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports() -> tuple[int, int]:
    """Two loopback ports free now (held together while chosen, so they differ)."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _template(name: str, **values: object) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8").format(**values)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# -- a container or an external cluster ----------------------------------------------------


class ContainerBroker:
    """A broker in a container started through testcontainers; it lives as long as this Python process."""

    name = "container"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._container: Any = None

    def up(self) -> Broker:
        if self._container is not None:
            return Broker(self._container.get_bootstrap_server(), self.name)
        problems = []
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            problems.append("testcontainers not installed (pip install 'testcontainers[kafka]')")
        docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not _docker_reachable(docker_host):
            problems.append(f"no Docker engine reachable at {docker_host}")
        if problems:
            raise BrokerUnavailable(f"container broker: {'; '.join(problems)}; or set kafka_provisioner = local")
        try:
            self._container = KafkaContainer(CONTAINER_IMAGE).with_kraft().start()
        except Exception as exc:  # the Docker client's errors vary with the engine and its version
            raise BrokerUnavailable(f"container broker did not start (Docker engine at {docker_host}): {exc}") from exc
        broker = Broker(self._container.get_bootstrap_server(), self.name)
        log.info("broker_started", bootstrap=broker.bootstrap, image=CONTAINER_IMAGE)
        return broker

    def down(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None

    def status(self) -> Broker | None:
        return None if self._container is None else Broker(self._container.get_bootstrap_server(), self.name)


def _docker_reachable(docker_host: str) -> bool:
    if not docker_host.startswith("unix://"):
        return True  # a remote engine is judged by starting the container
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(docker_host.removeprefix("unix://"))
        except OSError:
            return False
    return True


class ExternalBroker:
    """A cluster run by someone else at settings.kafka_bootstrap: checked, never started or stopped."""

    name = "external"

    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.bootstrap = settings.kafka_bootstrap
        self.timeout = timeout

    def up(self) -> Broker:
        broker = self.status()
        if broker is None:
            raise BrokerUnavailable(f"no Kafka broker answered at {self.bootstrap!r} within {self.timeout:.0f} s")
        return broker

    def down(self) -> None:
        """Nothing to do: the cluster is not gridloop's to stop."""

    def status(self) -> Broker | None:
        return Broker(self.bootstrap, self.name) if self.bootstrap and _answers(self.bootstrap, self.timeout) else None


# -- topics ---------------------------------------------------------------------------------


TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Set on every topic gridloop creates: keep every record, whatever the broker's default retention."""


def create_topics(broker: Broker, names: Sequence[str], partitions: int, replication: int) -> list[str]:
    """Create the topics that do not exist yet and return them; existing topics are left as they are.

    Each is created with ``TOPIC_CONFIGS``: gridloop's topics are a log, not a buffer. A broker's default
    retention (seven days in stock Kafka) would delete the events a rebuild from offset 0 needs, and the
    dead letters an operator has not looked at yet."""
    with _admin(broker.bootstrap, timeout=30.0) as admin:
        existing = set(admin.list_topics())
        wanted = [name for name in dict.fromkeys(names) if name not in existing]
        if not wanted:
            return []
        spec = {"num_partitions": partitions, "replication_factor": replication, "configs": dict(TOPIC_CONFIGS)}
        response = admin.create_topics({name: spec for name in wanted}, raise_errors=False)
        created, refused = [], []
        for topic in response["topics"]:
            if topic["error_code"] == 0:
                created.append(topic["name"])
            elif topic["error_code"] != TopicAlreadyExistsError.errno:  # already exists: created meanwhile elsewhere
                refused.append(f"{topic['name']} ({topic.get('error_message') or topic['error_code']})")
        if refused:
            raise TopicsRefused(f"the broker at {broker.bootstrap} refused to create: {'; '.join(refused)}")
        admin.wait_for_topics(created, timeout_ms=30_000)
    log.info("topics_created", topics=created, partitions=partitions, replication=replication)
    return created


@contextmanager
def _admin(bootstrap: str, timeout: float) -> Iterator[Any]:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id="gridloop-ops", bootstrap_timeout_ms=int(timeout * 1000)
    )
    try:
        yield admin
    finally:
        admin.close()


def _answers(bootstrap: str, timeout: float) -> bool:
    """Whether the cluster answers a metadata request naming at least one broker ready to lead partitions."""
    addresses = [(host.strip("[]"), int(port)) for host, _, port in (a.rpartition(":") for a in bootstrap.split(","))]
    deadline = time.monotonic() + timeout
    while True:
        # A port that refuses is judged here: the Kafka client would retry it until its own timeout.
        if any(_accepts(port, host) for host, port in addresses):
            with suppress(KafkaError), _admin(bootstrap, timeout=max(0.5, deadline - time.monotonic())) as admin:
                if admin.describe_cluster()["brokers"]:
                    return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
