"""``python -m foleybench`` (and ``torchrun -m foleybench``): the command line."""
import sys

from foleybench.cli import main

sys.exit(main())
