import sys

from zoned.cli.main import main

sys.exit(main())
