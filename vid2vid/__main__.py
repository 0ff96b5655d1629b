import sys

from vid2vid.cli import main

sys.exit(main())
