"""``python -m rosetta.distributed torch RANK FOLDER | tf FOLDER``: a data-parallel worker."""

import sys

from rosetta.distributed import main

sys.exit(main())
