"""`python -m sparse_assets.cli`: the `sparse-assets` command."""

import sys

from sparse_assets.cli import main

sys.exit(main())
