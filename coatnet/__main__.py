"""`python -m coatnet`: the command line."""

from coatnet.cli.commands import main

raise SystemExit(main())
