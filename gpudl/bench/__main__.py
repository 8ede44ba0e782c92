"""python -m gpudl.bench: the same as `gpudl bench`."""
import sys

from . import main

sys.exit(main())
