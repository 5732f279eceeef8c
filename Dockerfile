# edgeline: one image for every edgeline process (workers, emulator, migrations, station agents).
#   docker build -t edgeline .            (or: docker-compose build; see docs/deployment.md)
#   docker run --rm edgeline --help
#
# Two stages: the first builds edgeline's wheel from the source tree; the second installs that wheel
# (with its dependencies, and the migrations it carries) the way a user installs the package. No
# source tree and no editable install end up in the image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stations ./stations
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /dist .

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

COPY --from=build /dist/ /tmp/dist/
COPY deploy/station-setup.sh /usr/local/bin/edgeline-station-setup
# pysparkplug (Sparkplug B payloads) declares paho-mqtt<2 for a client edgeline does not use: no deps.
RUN pip install /tmp/dist/edgeline-*.whl \
    && pip install --no-deps 'pysparkplug==0.6.1' \
    && rm -rf /tmp/dist \
    && chmod 0755 /usr/local/bin/edgeline-station-setup \
    && edgeline --version \
    && python -c "import pipeline.db.migrate as m; assert (m.MIGRATIONS_DIR / 'env.py').is_file()"

USER edgeline
WORKDIR /var/lib/edgeline
ENTRYPOINT ["edgeline"]
CMD ["--help"]
