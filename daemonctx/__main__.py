"""``python -m daemonctx``: the ``daemonctx`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
