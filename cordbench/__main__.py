import sys

from cordbench.cli import main

sys.exit(main())
