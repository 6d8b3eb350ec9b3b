"""``python -m sir_membership``: the change-set preview and drift check (see ``cli``)."""

from .cli import main

raise SystemExit(main())
