"""`python -m envaudit` runs the CLI."""

from envaudit.cli import main

raise SystemExit(main())
