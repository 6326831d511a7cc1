"""The ``--help`` epilogs of ``siteclient`` and its operating commands: examples and exit codes.

(``init`` and ``check-config`` keep theirs beside their code, in :mod:`siteclient.setup`.)
"""

MAIN = """\
a site's first hour:
  # the admin listed site-a (pht keys new site-a) and runs the registry; then, at the site:
  siteclient init --dir site-a --site site-a --registry http://127.0.0.1:8555 \\
      --allow 'myconsortium/[a-z0-9._-]+:[\\w.-]+(@sha256:[0-9a-f]{64})?' \\
      --sparql-endpoint none --key-file site-a.key --yes
  siteclient check-config --config site-a/config.json
  siteclient follow --config site-a/config.json

exit codes (every command): 0 ok; 1 error (one line on stderr: the reason and its fix);
2 usage; follow also: 3 the registry forked or rewrote history (evidence kept in state_dir),
5 this site was revoked. `siteclient COMMAND --help` says more."""

FOLLOW = """\
example:
  siteclient follow --config site-a/config.json

Signals: SIGTERM or SIGINT stop it within about 2 s, even during a long poll; running
containers are killed and their tasks rerun on the next start. SIGHUP reads the site config
again and applies allowed_images, limits, require_digest and require_review (the log says what
changed; a site config that does not load is logged and the running one kept; other keys need
a restart).

It refuses to start when `site` is not a site of the consortium or key_file is not that site's
key. On a first start (an empty state_dir) a registry URL where nothing answers, or where
something that is not a PHT registry answers, stops it; once it has verified the ledger it
retries through registry outages and logs "reconnected" when the registry is back.

exit codes: 0 stopped by a signal (or --once done); 1 error: the site config, the site's name
or key, the registry URL on a first start, a key the registry refuses (the reason says which);
3 the registry forked or rewrote history (evidence kept in state_dir; do not restart blindly);
5 this site was revoked ("revoked at entry N"); a supervisor should not restart on 3 or 5
(systemd: RestartPreventExitStatus=3 5)."""

CHECK_IMAGE = """\
examples:
  siteclient check-image 127.0.0.1:5000/pht-test/busybox:latest --config site-a/config.json
  siteclient check-image myconsortium/avg:1.2@sha256:<64 hex> --config site-a/config.json

Patterns in allowed_images are regular expressions matched in full against the image's
familiar form (docker.io/library/ubuntu:22.04 is 'ubuntu:22.04'). For a reference without a
digest it also answers for its pinned form REF@sha256:<digest>, which `pht task post
--pin-digest` posts, and names the fix when only the plain form is allowed: append
(@sha256:[0-9a-f]{64})? to the pattern. Glob-like patterns ('repo/*') are warned about.

exit codes: 0 allowed, in the given and the pinned form (and approved in review where the site
requires review); 1 refused in either form, or the site config does not load."""
