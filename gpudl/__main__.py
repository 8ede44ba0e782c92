"""`python -m gpudl`: the same as the `gpudl` command."""
import sys

from .cli import main

sys.exit(main())
