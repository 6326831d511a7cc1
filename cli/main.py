"""``pht``: the command line. One parser, one subcommand per module, one error funnel.

Every command returns an exit code; errors raised by the libraries (and ``CliError``) end here
and print one line, ``pht: error: <reason>``, returning 1. Logging is configured here and only
here.
"""

from __future__ import annotations

import argparse
import logging
import sys

from api.client.evidence import keep_evidence
from api.errors import ApiError
from cli import audit, image, init, keys, member, profile, serve, site, store, task, witness
from cli.errors import CliError
from cli.hints import hint
from cli.profile import state_home
from crypto import CryptoError
from ledger.errors import LedgerError, UntrustedLogError

COMMANDS = (keys, init, serve, member, task, image, audit, profile, witness, site, store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pht", description="Personal Health Train: registry, ledger and tasks."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


EXIT_UNTRUSTED = 3  # as `siteclient follow` and `pht audit`: the registry was caught lying


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        return exc.code if isinstance(exc.code, int) else 2
    _configure_logging(args.verbose, args.quiet)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("pht: interrupted", file=sys.stderr)
        return 130
    except UntrustedLogError as exc:
        print(f"pht: THE REGISTRY CANNOT BE TRUSTED ({type(exc).__name__}): {exc}", file=sys.stderr)
        try:
            folder = keep_evidence(state_home() / "evidence", exc)
            print(f"pht: evidence kept in {folder}", file=sys.stderr)
        except OSError as error:
            print(f"pht: the evidence could not be kept: {error}", file=sys.stderr)
        return EXIT_UNTRUSTED
    except (CliError, LedgerError, CryptoError, ApiError) as exc:
        print(f"pht: error: {exc}{hint(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"pht: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
