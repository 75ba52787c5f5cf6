"""``python -m mmwrs.configs wrs`` prints the shipped overlay's path."""
import sys

from . import main

sys.exit(main())
