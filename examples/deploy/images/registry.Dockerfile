# The PHT registry (`pht serve`), built by examples/deploy/build-images.sh without network
# access, FROM the shared dependencies image (deps.Dockerfile: the project's Debian base, the
# user `pht`, PHT's runtime dependencies). The context holds app/ (PHT, installed from its wheel)
# and bin/ (its two commands).
ARG DEPS
FROM ${DEPS}
COPY app /opt/pht/app
COPY bin /usr/local/bin
LABEL org.pht.deploy.image=registry
# The data directory (`pht init --data /var/lib/pht ...` once, then the default command serves
# it): a volume, owned by the image's unprivileged user.
USER pht
WORKDIR /var/lib/pht
VOLUME /var/lib/pht
EXPOSE 8555
ENTRYPOINT ["pht"]
CMD ["serve", "--data", "/var/lib/pht", "--host", "0.0.0.0", "--port", "8555"]
