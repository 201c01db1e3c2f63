import sys

from keyhole.cli.main import main

sys.exit(main())
