# The PHT registry (`pht serve`), built by examples/deploy/build-images.sh without network access
# FROM the project's own Debian base image (examples/images/build.sh: debootstrap minbase with
# python3, `docker import`ed). The context holds deps/ (PHT's runtime dependencies at the versions
# the tests ran, `pip install --target`ed on the host), app/ (PHT itself, from its wheel) and bin/
# (the two commands). The first instructions are the same in siteclient.Dockerfile, so the two
# images share those layers.
ARG BASE
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pht --no-create-home \
        --shell /usr/sbin/nologin pht \
    && install -d -o pht -g pht -m 0700 /var/lib/pht
ENV PYTHONPATH=/opt/pht/app:/opt/pht/deps PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY deps /opt/pht/deps
COPY app /opt/pht/app
COPY bin /usr/local/bin
LABEL org.pht.deploy.image=registry
# The data directory (`pht init --data /var/lib/pht ...` once, then the default command serves
# it): a volume, owned by the image's own unprivileged user.
USER pht
WORKDIR /var/lib/pht
VOLUME /var/lib/pht
EXPOSE 8555
ENTRYPOINT ["pht"]
CMD ["serve", "--data", "/var/lib/pht", "--host", "0.0.0.0", "--port", "8555"]
