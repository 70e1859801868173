"""`python -m mailfold`: the same command as the installed `mailfold` script."""

import sys

from mailfold.cli import main

sys.exit(main())
