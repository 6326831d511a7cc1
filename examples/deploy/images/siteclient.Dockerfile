# The PHT site client (`siteclient follow`, `siteclient serve-files`), built by
# examples/deploy/build-images.sh like registry.Dockerfile (same first layers).
#
# `follow` needs the Docker engine's socket mounted and its group added (root-equivalent on the
# host: docs/deploy.md), and its work_dir mounted at the same path inside as outside, because the
# engine bind-mounts the task folders from the host's view of that path.
ARG BASE
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pht --no-create-home \
        --shell /usr/sbin/nologin pht \
    && install -d -o pht -g pht -m 0700 /var/lib/pht
ENV PYTHONPATH=/opt/pht/app:/opt/pht/deps PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY deps /opt/pht/deps
COPY app /opt/pht/app
COPY bin /usr/local/bin
LABEL org.pht.deploy.image=siteclient
USER pht
WORKDIR /var/lib/pht
EXPOSE 8443
ENTRYPOINT ["siteclient"]
CMD ["--help"]
