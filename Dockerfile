# fleetlite API image.
#
#   docker build -t fleetlite .
#   docker compose up --build        # with Postgres + MinIO, see docker-compose.yml
#
# Two stages: the builder installs everything into /opt/venv, the runtime stage
# copies only that venv (no pip cache, no build inputs) and runs as a non-root user.

FROM python:3.11-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer: they come from pyproject.toml alone, so
# editing app/ or models/ does not re-download TensorFlow (~600 MB).
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# Then the project itself (packages app and models; the [test] extra is not installed).
COPY app ./app
COPY models ./models
RUN pip install --no-cache-dir --no-deps . \
    && pip check


FROM python:3.11-slim-bookworm AS runtime

# Image defaults keep all state under /data so `docker run -v fleetlite:/data fleetlite`
# works on its own (SQLite + local store); docker-compose.yml points them at
# Postgres and MinIO instead.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FLEETLITE_DATABASE_URL=sqlite:////data/fleetlite.db \
    FLEETLITE_STORE_URL=/data/store \
    FLEETLITE_WORK_DIR=/data/tmp

# /data is created here, owned by the app user, so that an empty named volume
# mounted there starts with the same ownership and is writable.
RUN groupadd --system --gid 10001 fleetlite \
    && useradd --system --uid 10001 --gid fleetlite --create-home --home-dir /home/fleetlite \
        --shell /usr/sbin/nologin fleetlite \
    && mkdir -p /data/tmp /data/store \
    && chown -R fleetlite:fleetlite /data

COPY --from=builder /opt/venv /opt/venv

# alembic.ini and migrations/ are run from here (`alembic upgrade head`); the code
# itself is imported from the venv. Files stay root-owned: the app cannot modify them.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations

# Numeric, so runtimes (e.g. Kubernetes runAsNonRoot) can verify it is not root.
USER 10001:10001

EXPOSE 8000

# No curl in the slim image: probe /readyz (DB and store answer) with the stdlib.
# urlopen raises on a 503, so the exit status is non-zero when not ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

# Migrate, then replace the shell with uvicorn (exec) so uvicorn is PID 1 and gets
# SIGTERM directly: the app checkpoints sessions on SIGTERM.
CMD ["sh", "-c", "alembic upgrade head && exec uvicorn --factory app.main:create_app --host 0.0.0.0 --port 8000 --loop uvloop --http httptools --timeout-graceful-shutdown 20"]
