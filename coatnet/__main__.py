"""`python -m coatnet`: the command line."""

from coatnet.cli import main

raise SystemExit(main())
