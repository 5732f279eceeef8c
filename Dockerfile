# edgeline: one image for every edgeline process (workers, emulator, migrations, station agents).
#   docker build -t edgeline .            (or: docker-compose build; see docs/deployment.md)
#   docker run --rm edgeline --help
FROM python:3.11-slim

# The runtime user's ids. Match them to the owner of host files the container must read with mode 0600
# (the master key secret): docker-compose passes EDGELINE_UID/EDGELINE_GID from the environment.
ARG EDGELINE_UID=10001
ARG EDGELINE_GID=10001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDGELINE_STATE_DIR=/var/lib/edgeline

RUN groupadd --system --gid "${EDGELINE_GID}" edgeline \
    && useradd --system --uid "${EDGELINE_UID}" --gid edgeline --home-dir /var/lib/edgeline \
        --no-create-home --shell /usr/sbin/nologin edgeline \
    && install -d -m 0700 -o edgeline -g edgeline /var/lib/edgeline

WORKDIR /opt/edgeline

# Dependencies first (cached until pyproject.toml changes), then the source. pyproject.toml names a
# README.md as the long description; an empty one is enough for the build.
COPY pyproject.toml ./
RUN mkdir -p pipeline stations \
    && touch README.md pipeline/__init__.py stations/__init__.py \
    && pip install -e . \
    && pip install --no-deps 'pysparkplug==0.6.1' \
    && rm -rf pipeline stations

COPY pipeline ./pipeline
COPY stations ./stations
# `edgeline db upgrade` finds migrations/ next to the pipeline package (pipeline/db/migrate.py), which a
# plain `pip install .` would not carry into site-packages; hence the editable install from /opt/edgeline.
COPY migrations ./migrations
COPY deploy/station-setup.sh /usr/local/bin/edgeline-station-setup
RUN pip install --no-deps -e . \
    && chmod 0755 /usr/local/bin/edgeline-station-setup \
    && edgeline --help > /dev/null

USER edgeline
WORKDIR /var/lib/edgeline
ENTRYPOINT ["edgeline"]
CMD ["--help"]
