# The PHT site client (`siteclient follow`, `siteclient serve-files`), built by
# examples/deploy/build-images.sh like registry.Dockerfile, from the same layers.
#
# `follow` needs the Docker engine's socket mounted and its group added (root-equivalent on the
# host: docs/deploy.md), and its work_dir mounted at the same path inside as outside, because the
# engine bind-mounts the task folders from the host's view of that path.
ARG DEPS
FROM ${DEPS}
COPY app /opt/pht/app
COPY bin /usr/local/bin
LABEL org.pht.deploy.image=siteclient
USER pht
WORKDIR /var/lib/pht
EXPOSE 8443
ENTRYPOINT ["siteclient"]
CMD ["--help"]
