"""Entry point for ``python -m suggest_ls``."""

from suggest_ls.cli import main

raise SystemExit(main())
