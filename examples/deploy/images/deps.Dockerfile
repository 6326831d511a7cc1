# What the two deployment images share (examples/deploy/build-images.sh): the project's Debian
# base (examples/images/build.sh), the unprivileged user `pht` (uid 10001) and PHT's runtime
# dependencies at the versions the tests ran (deps/, `pip install --target`ed on the host).
# Tagged by the hash of those pins and rebuilt only when they change; registry.Dockerfile and
# siteclient.Dockerfile add PHT itself on top.
ARG BASE
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pht --no-create-home \
        --shell /usr/sbin/nologin pht \
    && install -d -o pht -g pht -m 0700 /var/lib/pht
ENV PYTHONPATH=/opt/pht/app:/opt/pht/deps PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY deps /opt/pht/deps
LABEL org.pht.deploy.image=deps
