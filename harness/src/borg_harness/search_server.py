"""A real Elasticsearch (or OpenSearch) node on loopback, for integration tests.

The distribution is the vendor's *integ-test zip* from Maven Central, fetched with
``mvn`` (the only registry client these machines are guaranteed to have for Java
artifacts) and unzipped into a cache directory outside the repository:

- Elasticsearch 8.19.21 (``org.elasticsearch.distribution.integ-test-zip:elasticsearch``),
  the default because the product's compose file runs Elasticsearch. The integ-test zip
  ships no JDK and only the modules ``apm``, ``transport-netty4``, ``x-pack-core`` and
  ``x-pack-security``: index templates, mappings, search and the core aggregations
  (terms, date_histogram, avg, max, percentiles, ...) work; painless scripts, data
  streams, ingest pipelines' extra processors and ``analysis-common`` analyzers do not.
- OpenSearch 3.6.0 (``org.opensearch.distribution.integ-test-zip:opensearch``), selected
  with ``BORG_SEARCH_FLAVOR=opensearch``, as a fallback should Elastic stop publishing.

Security is off by default; ``SearchServer(elastic_password=...)`` turns it on as the
product's compose file runs Elasticsearch (users and passwords over plain HTTP), with
file-realm users and roles on request. Users made with the security API cannot be stored
on this node (see :class:`SearchServer`).

Running as root: both products refuse to start as root (a hard-coded check, with no
override since Elasticsearch 6). When this process is root (CI containers usually are),
the node runs as an unprivileged system user (``BORG_SEARCH_USER``, default
``borg-search``), created on demand with ``useradd``, falling back to ``nobody``. The
switch uses :class:`subprocess.Popen`'s ``user``/``group``/``extra_groups`` (setresuid
in the child), so no ``sudo``/``runuser`` is needed. Everything the node writes (config
copy, data, logs, tmp) lives in a fresh temp directory owned by that user; if the
cached distribution is not reachable by the user (``~/.cache`` under a 0700 ``/root``),
a hard-linked (or copied) mirror of it is made inside the temp directory.

Command line: ``python -m borg_harness.search_server --install-only`` only fetches (a CI
install step); without it, a node runs in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

__all__ = [
    "DISTRIBUTIONS",
    "Distribution",
    "SearchServer",
    "SearchServerError",
    "basic_authorization",
    "default_distribution",
    "ensure_search",
    "find_java_home",
]

log = logging.getLogger(__name__)

Flavor = Literal["elasticsearch", "opensearch"]

_MARKER: Final = ".borg-installed.json"
# Pinned so that a test run is reproducible; the plugin's default version would
# otherwise float with whatever the repository's metadata says is newest.
_DEPENDENCY_PLUGIN: Final = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Distribution:
    """One downloadable integ-test distribution and the JDKs it runs on."""

    flavor: Flavor
    group_id: str
    artifact_id: str
    version: str
    #: Java feature releases it supports, most preferred first.
    java_majors: tuple[int, ...]

    @property
    def name(self) -> str:
        """``<artifact>-<version>``, also the cache directory's name."""
        return f"{self.artifact_id}-{self.version}"

    @property
    def coordinates(self) -> str:
        """Maven coordinates ``group:artifact:version:zip``."""
        return f"{self.group_id}:{self.artifact_id}:{self.version}:zip"

    @property
    def env_prefix(self) -> str:
        """Prefix of the launcher's environment variables (``ES`` or ``OPENSEARCH``)."""
        return "ES" if self.flavor == "elasticsearch" else "OPENSEARCH"


DISTRIBUTIONS: Final[dict[Flavor, Distribution]] = {
    # 8.19.x is the newest line with an integ-test zip on Maven Central (no 9.x there).
    # Elasticsearch 8 needs Java 17+; 17 is the JDK it has been tested on longest.
    "elasticsearch": Distribution(
        flavor="elasticsearch",
        group_id="org.elasticsearch.distribution.integ-test-zip",
        artifact_id="elasticsearch",
        version="8.19.21",
        java_majors=(17, 21, 25, 24),
    ),
    # OpenSearch 3 needs Java 21+.
    "opensearch": Distribution(
        flavor="opensearch",
        group_id="org.opensearch.distribution.integ-test-zip",
        artifact_id="opensearch",
        version="3.6.0",
        java_majors=(21, 25, 24),
    ),
}


class SearchServerError(RuntimeError):
    """The search node could not be installed, started or reached."""


def default_distribution() -> Distribution:
    """The distribution chosen by ``BORG_SEARCH_FLAVOR`` (default: elasticsearch)."""
    flavor = os.environ.get("BORG_SEARCH_FLAVOR", "elasticsearch").strip().lower()
    if flavor not in DISTRIBUTIONS:
        raise SearchServerError(f"BORG_SEARCH_FLAVOR={flavor!r} is not one of {sorted(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[flavor]


def cache_root() -> Path:
    """``$BORG_CACHE_DIR``, defaulting to ``~/.cache/borg-dqn``."""
    env = os.environ.get("BORG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "borg-dqn"


# --------------------------------------------------------------------------- install


def ensure_search(cache_dir: Path | None = None, distribution: Distribution | None = None) -> Path:
    """Fetch and unzip the search distribution once; return its home directory.

    ``cache_dir`` is the home directory itself (default
    ``$BORG_CACHE_DIR/<artifact>-<version>``). A marker file written last makes the
    call idempotent, and a lock file serialises concurrent installers (pytest-xdist
    workers, parallel CI steps).
    """
    dist = distribution or default_distribution()
    home = (cache_dir or cache_root() / dist.name).expanduser().absolute()
    if _installed(home, dist):
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    lock_path = home.parent / f".{home.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(home, dist):  # another process finished while we waited
            return home
        started = time.monotonic()
        _install(home, dist)
        log.info("installed %s into %s in %.1fs", dist.name, home, time.monotonic() - started)
    return home


def _installed(home: Path, dist: Distribution) -> bool:
    try:
        marker = json.loads((home / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("version") == dist.version


def _install(home: Path, dist: Distribution) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SearchServerError(
            "mvn (Apache Maven) is needed to fetch the search distribution; install it (Debian: apt-get install maven)"
        )
    # Stage next to the destination so the final rename is atomic on one filesystem.
    with tempfile.TemporaryDirectory(prefix=f".{home.name}-", dir=home.parent) as tmp:
        staging = Path(tmp)
        download = staging / "download"
        cmd = [
            mvn,
            "--batch-mode",
            "--quiet",
            f"{_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={dist.coordinates}",
            f"-DoutputDirectory={download}",
        ]
        log.info("fetching %s with mvn", dist.coordinates)
        # Run outside the repository so that no project pom can interfere.
        proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, check=False)
        zips = sorted(download.glob("*.zip"))
        if proc.returncode != 0 or len(zips) != 1:
            raise SearchServerError(
                f"mvn could not fetch {dist.coordinates} (exit {proc.returncode}):\n" + _tail(proc.stdout + proc.stderr)
            )
        unpacked = staging / "unpacked"
        _unzip(zips[0], unpacked)
        tops = [p for p in unpacked.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "bin" / dist.flavor).is_file():
            raise SearchServerError(f"unexpected layout in {zips[0].name}: {tops}")
        new_home = tops[0]
        (new_home / _MARKER).write_text(json.dumps({"flavor": dist.flavor, "version": dist.version}) + "\n")
        if home.exists():  # a stale or half-written install: replace it
            shutil.rmtree(home)
        new_home.rename(home)


def _unzip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` keeping Unix permission bits (``zipfile`` drops them)."""
    dest.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                target.chmod(mode)
    # Directories get the umask's mode; a restrictive umask (077) would lock out the
    # unprivileged user that runs the node when we are root.
    for dirpath, _dirs, _files in os.walk(dest):
        Path(dirpath).chmod(0o755)


# --------------------------------------------------------------------------- java


def _java_major(java_home: Path) -> int | None:
    """The feature release of the JDK at ``java_home``, from its ``release`` file."""
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    m = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', text, re.MULTILINE)
    if m is None:
        return None
    major = int(m.group(1))
    # Java 8 and older report "1.8.0_..."; irrelevant here but keep it correct.
    return int(m.group(2) or 0) if major == 1 else major


def _java_candidates() -> list[Path]:
    found: list[Path] = []
    if env := os.environ.get("JAVA_HOME"):
        found.append(Path(env))
    if java := shutil.which("java"):
        found.append(Path(java).resolve().parent.parent)
    for root in (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/usr/local/lib/jvm")):
        if root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if p.is_dir()))
    unique: list[Path] = []
    for path in found:
        if (path / "bin" / "java").is_file() and path.resolve() not in {u.resolve() for u in unique}:
            unique.append(path)
    return unique


def find_java_home(distribution: Distribution | None = None) -> Path:
    """A JDK the distribution supports: ``BORG_SEARCH_JAVA_HOME`` or the best found.

    Candidates are ``$JAVA_HOME``, the ``java`` on ``PATH`` and the JDKs under
    ``/usr/lib/jvm``; the first supported feature release in the distribution's
    preference order wins.
    """
    dist = distribution or default_distribution()
    if forced := os.environ.get("BORG_SEARCH_JAVA_HOME"):
        return Path(forced)
    by_major: dict[int, Path] = {}
    for cand in _java_candidates():
        major = _java_major(cand)
        if major is not None:
            by_major.setdefault(major, cand)
    for major in dist.java_majors:
        if major in by_major:
            return by_major[major]
    raise SearchServerError(
        f"{dist.name} needs a JDK with Java {'/'.join(map(str, dist.java_majors))}; "
        f"found {sorted(by_major) or 'none'}. Install one or set BORG_SEARCH_JAVA_HOME."
    )


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _unprivileged_user() -> _RunAs | None:
    """The user to run the node as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("BORG_SEARCH_USER", "borg-search")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_user(name)
    if entry.pw_uid == 0:
        raise SearchServerError(f"BORG_SEARCH_USER={name!r} is root; pick another user")
    return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _create_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or ("/usr/sbin/useradd" if Path("/usr/sbin/useradd").is_file() else None)
    if useradd is not None:
        proc = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        # Exit 9 = the user appeared meanwhile (a parallel test worker created it).
        if proc.returncode in (0, 9):
            log.info("created system user %r to run the search node", name)
            return pwd.getpwnam(name)
        log.warning("useradd %s failed: %s", name, proc.stderr.strip())
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise SearchServerError(
            f"running as root, and user {name!r} could not be created (no useradd) "
            "and 'nobody' does not exist; create a user and set BORG_SEARCH_USER"
        ) from None
    log.warning("running the search node as 'nobody' (could not create %r)", name)
    return entry


def _reachable_by(path: Path, who: _RunAs) -> bool:
    """Whether ``who`` can traverse every directory down to ``path`` (mode bits only)."""
    gids = {who.gid, *os.getgrouplist(who.name, who.gid)}
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == who.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _mirror(src: Path, dest: Path) -> None:
    """Hard-link ``src`` into ``dest`` (instant, no disk), copying across filesystems."""

    def link_or_copy(s: str, d: str) -> object:
        try:
            os.link(s, d)
            return d
        except OSError:
            return shutil.copy2(s, d)

    shutil.copytree(src, dest, symlinks=True, copy_function=link_or_copy)


# --------------------------------------------------------------------------- server


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may contain spaces and parentheses; ppid follows the
            # last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


class SearchServer:
    """A single search node on 127.0.0.1, as a context manager.

    >>> with SearchServer() as es:
    ...     urllib.request.urlopen(es.url + "/_cluster/health")

    Plain HTTP, ``discovery.type=single-node``, OS-assigned HTTP and transport ports
    (read back from the node's ports files, so there is no race between picking a free
    port and binding it), a fresh data/logs directory in a temp dir, a 512 MiB heap and
    disk watermarks off.

    Security is off unless ``elastic_password`` is given (Elasticsearch only): then the
    node requires users and passwords over its plain HTTP, as the product's compose file
    runs it, and the built-in ``elastic`` superuser's password is ``elastic_password``
    (the keystore's ``bootstrap.password``, which is how the Docker image's
    ``ELASTIC_PASSWORD`` works too). :attr:`auth` is then ``("elastic", password)``.

    Other users exist only in the file realm (``users``, ``roles``: written to the node's
    ``config/users`` and ``config/roles.yml``). Users and roles made with the security API
    (the native realm) and reserved users' new passwords are stored in the ``.security``
    index, whose mapping needs the ``analysis-common`` module's analyzers, which the
    integ-test zip does not ship: on this node those API calls fail.
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        distribution: Distribution | None = None,
        java_home: Path | None = None,
        heap: str = "512m",
        startup_timeout: float = 180.0,
        settings: dict[str, str] | None = None,
        elastic_password: str | None = None,
        users: Mapping[str, tuple[str, Sequence[str]]] | None = None,
        roles: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Configure (not start) a node.

        ``home`` is an unpacked distribution (default: :func:`ensure_search`);
        ``settings`` are extra ``elasticsearch.yml``/``opensearch.yml`` entries;
        ``elastic_password`` turns security on; ``users`` (name -> (password, role
        names)) and ``roles`` (name -> a role as the security API takes it) make
        file-realm users and roles (see the class docstring).
        """
        self._dist = distribution or default_distribution()
        if elastic_password is not None:
            if self._dist.flavor != "elasticsearch":
                raise SearchServerError("elastic_password needs the elasticsearch flavor (its x-pack security)")
            if len(elastic_password) < 6:
                raise SearchServerError("elastic_password must have at least 6 characters (Elasticsearch's minimum)")
        elif users or roles:
            raise SearchServerError("users and roles need security on: give an elastic_password")
        self._elastic_password = elastic_password
        self._users = dict(users or {})
        self._roles = {name: dict(role) for name, role in (roles or {}).items()}
        self._home = home
        self._java_home = java_home
        self._heap = heap
        self._startup_timeout = startup_timeout
        self._extra_settings = dict(settings or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._console: Path | None = None
        self._port: int | None = None
        self._transport_port: int | None = None

    # ------------------------------------------------------------------ properties

    @property
    def flavor(self) -> Flavor:
        """``"elasticsearch"`` or ``"opensearch"``."""
        return self._dist.flavor

    @property
    def version(self) -> str:
        """The product version, e.g. ``"8.19.21"``."""
        return self._dist.version

    @property
    def port(self) -> int:
        """The HTTP port (only while running)."""
        if self._port is None:
            raise SearchServerError("the search node is not running")
        return self._port

    @property
    def transport_port(self) -> int:
        """The transport port (only while running)."""
        if self._transport_port is None:
            raise SearchServerError("the search node is not running")
        return self._transport_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str] | None:
        """``("elastic", password)`` when security is on, else None."""
        return None if self._elastic_password is None else ("elastic", self._elastic_password)

    @property
    def log_path(self) -> Path | None:
        """The node's console output (stdout and stderr), while the temp dir exists."""
        return self._console

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the node and wait until its cluster health is yellow or green."""
        if self._proc is not None:
            raise SearchServerError("the search node is already running")
        started = time.monotonic()
        dist = self._dist
        home = self._home or ensure_search(distribution=dist)
        if not (home / "bin" / dist.flavor).is_file():
            raise SearchServerError(f"{home} is not an unpacked {dist.flavor} distribution")
        java_home = self._java_home or find_java_home(dist)
        run_as = _unprivileged_user()

        workdir = Path(tempfile.mkdtemp(prefix=f"borg-{dist.flavor}-"))
        self._workdir = workdir
        try:
            if run_as is not None:
                workdir.chmod(0o755)  # mkdtemp makes it 0700; the node user must enter
                if not _reachable_by(workdir, run_as):
                    raise SearchServerError(
                        f"{workdir} is not reachable by user {run_as.name!r}; "
                        "point TMPDIR at a world-traversable directory"
                    )
                if not _reachable_by(home / "bin", run_as):
                    # e.g. the cache under /root (mode 0700): link a private mirror.
                    mirror = workdir / "home"
                    _mirror(home, mirror)
                    home = mirror
            conf = workdir / "config"
            # A private copy: the node writes its keystore there on first start, and
            # the cached distribution must stay pristine (and may be read-only).
            shutil.copytree(home / "config", conf)
            (conf / f"{dist.flavor}.yml").write_text(self._config_yaml(workdir))
            _patch_jvm_options(conf / "jvm.options", workdir / "logs")
            for sub in ("data", "logs", "tmp"):
                (workdir / sub).mkdir()
            env = self._environment(conf, workdir / "tmp", java_home)
            if self._elastic_password is not None:
                _add_bootstrap_password(home, env, self._elastic_password)
                _add_file_realm(home, env, conf, self._users, self._roles)
            if run_as is not None:
                for sub in ("config", "data", "logs", "tmp"):
                    _chown_tree(workdir / sub, run_as)

            self._console = workdir / "logs" / "console.log"
            with self._console.open("wb") as console:
                cmd = [str(home / "bin" / dist.flavor)]
                log.info(
                    "starting %s %s (java %s%s)",
                    dist.flavor,
                    dist.version,
                    java_home,
                    f", as user {run_as.name}" if run_as else "",
                )
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=workdir / "logs",
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    # Own process group, so stop() can signal the launcher JVM and
                    # the server JVM it forks in one go.
                    start_new_session=True,
                    user=run_as.uid if run_as else None,
                    group=run_as.gid if run_as else None,
                    extra_groups=[] if run_as else None,
                )
            self._wait_ready(workdir / "logs")
        except BaseException:
            self.stop()
            raise
        log.info(
            "%s %s ready at %s in %.1fs",
            dist.flavor,
            dist.version,
            self.url,
            time.monotonic() - started,
        )
        return self

    def stop(self) -> None:
        """Stop the node (its whole process tree) and delete its temp dir. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_tree(proc)
        workdir, self._workdir = self._workdir, None
        if workdir is not None and not os.environ.get("BORG_KEEP_SEARCH_DIR"):
            shutil.rmtree(workdir, ignore_errors=True)
            self._console = None
        self._port = self._transport_port = None

    # ------------------------------------------------------------------ helpers

    def _config_yaml(self, workdir: Path) -> str:
        settings: dict[str, str] = {
            "cluster.name": "borg-test",
            "node.name": "borg-test-node",
            "network.host": "127.0.0.1",
            # Port 0: the OS picks free ports; node.portsfile makes the node write
            # them to logs/{http,transport}.ports once bound.
            "http.port": "0",
            "transport.port": "0",
            "node.portsfile": "true",
            "discovery.type": "single-node",
            "path.data": str(workdir / "data"),
            "path.logs": str(workdir / "logs"),
            # CI disks can be nearly full; the default watermarks would then refuse
            # to allocate shards and the cluster would never turn yellow.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            # Lets tests wipe indices with wildcards between cases.
            "action.destructive_requires_name": "false",
        }
        if self._dist.flavor == "elasticsearch":
            # Security is on by default in 8.x (TLS + auth); tests want plain HTTP, and
            # users and passwords only when asked for. Setting it explicitly also keeps
            # the launcher from auto-configuring TLS certificates on first start.
            settings["xpack.security.enabled"] = "false" if self._elastic_password is None else "true"
            if self._elastic_password is not None:
                settings["xpack.security.http.ssl.enabled"] = "false"
                settings["xpack.security.transport.ssl.enabled"] = "false"
        settings.update(self._extra_settings)
        # JSON strings are valid YAML scalars, so no YAML library is needed.
        return "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items())

    def _environment(self, conf: Path, tmp: Path, java_home: Path) -> dict[str, str]:
        p = self._dist.env_prefix
        drop = {"JAVA_HOME", "JAVA_OPTS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"}
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("ES_", "OPENSEARCH_"))}
        env.update(
            {
                f"{p}_JAVA_HOME": str(java_home),
                # -UsePerfData: nothing reads the JVM's perf counters; skip their mmap file.
                f"{p}_JAVA_OPTS": f"-Xms{self._heap} -Xmx{self._heap} -XX:-UsePerfData",
                f"{p}_PATH_CONF": str(conf),
                f"{p}_TMPDIR": str(tmp),
                "HOME": str(tmp),
            }
        )
        if self._dist.flavor == "opensearch":
            # OpenSearch's launcher still honours JAVA_HOME as a fallback;
            # Elasticsearch's only warns that it ignores it, hence dropped above.
            env["JAVA_HOME"] = str(java_home)
        return env

    def _wait_ready(self, logs: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._error(f"exited with status {self._proc.returncode}")
            if self._port is None:
                self._port = _read_port(logs / "http.ports")
                self._transport_port = _read_port(logs / "transport.ports")
            if self._port is not None and self._health_ok():
                return
            time.sleep(0.5)
        raise self._error(f"not healthy within {self._startup_timeout:.0f}s")

    def _health_ok(self) -> bool:
        request = urllib.request.Request(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s")
        if self.auth is not None:
            request.add_header("Authorization", basic_authorization(*self.auth))
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                body: Any = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("status") in ("yellow", "green")

    def _error(self, what: str) -> SearchServerError:
        text = ""
        if self._console is not None:
            with contextlib.suppress(OSError):
                text = self._console.read_text(errors="replace")
        lines = text.splitlines()
        # A Java stack trace buries the cause under dozens of "at ..." lines: quote the
        # first few lines that name an error as well as the tail.
        key = [ln for ln in lines if re.search(r"\bERROR\b|Exception\b|FATAL|error:", ln)]
        keep = "" if os.environ.get("BORG_KEEP_SEARCH_DIR") else " (deleted; BORG_KEEP_SEARCH_DIR=1 keeps it)"
        return SearchServerError(
            f"{self._dist.flavor} {self._dist.version} {what}.\n"
            f"Error lines of {self._console}{keep}:\n" + "\n".join(key[:10]) + "\nLast lines:\n" + _tail(text, 40)
        )


def basic_authorization(user: str, password: str) -> str:
    """The value of an HTTP ``Authorization`` header for basic authentication."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _add_bootstrap_password(home: Path, env: dict[str, str], password: str) -> None:
    """Create the node's keystore (in its private config copy) holding ``bootstrap.password``.

    The password goes in on stdin, never on a command line.
    """
    tool = str(home / "bin" / "elasticsearch-keystore")
    for args, stdin in ((["create"], None), (["add", "--stdin", "bootstrap.password"], password)):
        proc = subprocess.run(
            [tool, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise SearchServerError(
                f"elasticsearch-keystore {args[0]} failed (exit {proc.returncode}):\n"
                + _tail(proc.stdout + proc.stderr)
            )


def _add_file_realm(
    home: Path,
    env: dict[str, str],
    conf: Path,
    users: Mapping[str, tuple[str, Sequence[str]]],
    roles: Mapping[str, Mapping[str, Any]],
) -> None:
    """Write file-realm roles (JSON is YAML) and users (hashed by ``elasticsearch-users``)."""
    if roles:
        (conf / "roles.yml").write_text(
            "".join(f"{json.dumps(name)}: {json.dumps(role)}\n" for name, role in roles.items())
        )
    tool = str(home / "bin" / "elasticsearch-users")
    for name, (password, user_roles) in users.items():
        # A test password on this command line is fine: the node is private to the test.
        args = ["useradd", name, "-p", password, "-r", ",".join(user_roles)]
        proc = subprocess.run([tool, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise SearchServerError(
                f"elasticsearch-users useradd {name} failed (exit {proc.returncode}):\n"
                + _tail(proc.stdout + proc.stderr)
            )


def _read_port(path: Path) -> int | None:
    try:
        first = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    # Lines look like "127.0.0.1:41234" (or "[::1]:41234").
    return int(first.rsplit(":", 1)[1])


def _patch_jvm_options(path: Path, logs: Path) -> None:
    """Point the JVM's relative GC-log, error-file and heap-dump paths at ``logs``.

    OpenSearch's launcher runs in its home directory, so ``logs/gc.log`` would land in
    the (shared, possibly unwritable) distribution and the JVM would refuse to start.
    """
    text = path.read_text()
    text = re.sub(r"file=[^:\s]*gc\.log", f"file={logs}/gc.log", text)
    text = re.sub(r"-XX:ErrorFile=\S+", f"-XX:ErrorFile={logs}/hs_err_pid%p.log", text)
    text = re.sub(r"-XX:HeapDumpPath=\S+", f"-XX:HeapDumpPath={logs}", text)
    text = re.sub(r"-Xloggc:\S+", f"-Xloggc:{logs}/gc.log", text)
    path.write_text(text)


def _chown_tree(root: Path, who: _RunAs) -> None:
    os.chown(root, who.uid, who.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), who.uid, who.gid, follow_symlinks=False)


def _terminate_tree(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the node's process tree (graceful shutdown), SIGKILL what is left.

    The launcher JVM exits as soon as it has relayed the signal, so waiting for it
    alone would cut the server JVM's shutdown short: wait for every process.
    """
    pids = [proc.pid, *_descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    for pid in pids[1:]:  # in case one left the process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the launcher so that its pid stops counting as alive
        if not any(_alive(pid) for pid in pids):
            break
        time.sleep(0.1)
    else:
        log.warning("search node did not stop within %.0fs; killing it", grace)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``--install-only`` fetches; otherwise run a node until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m borg_harness.search_server", description=__doc__.split("\n")[0])
    parser.add_argument("--install-only", action="store_true", help="fetch and unpack, then exit")
    parser.add_argument(
        "--flavor",
        choices=sorted(DISTRIBUTIONS),
        help="default: $BORG_SEARCH_FLAVOR or elasticsearch",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    dist = DISTRIBUTIONS[args.flavor] if args.flavor else default_distribution()
    home = ensure_search(distribution=dist)
    if args.install_only:
        log.info("%s is installed in %s", dist.name, home)
        return 0
    # SIGTERM (e.g. from a CI job runner) stops the node as Ctrl-C does; SIGINT is
    # re-armed because a shell's background job inherits it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with SearchServer(home, distribution=dist) as server:
        log.info("%s %s at %s; Ctrl-C stops it", server.flavor, server.version, server.url)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
